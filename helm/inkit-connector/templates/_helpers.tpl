{{/*
Chart name, truncated to 63 characters (the DNS label limit of Kubernetes names).
*/}}
{{- define "inkit-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release name + chart name, unless the release name already contains the chart name.
*/}}
{{- define "inkit-connector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version for the helm.sh/chart label ("+" is not allowed in label values).
*/}}
{{- define "inkit-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels. They carry no version: Deployment selectors are immutable, and a selector that
changed with each upgrade would break `helm upgrade`.
*/}}
{{- define "inkit-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inkit-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Common labels: the selector labels plus version and ownership.
*/}}
{{- define "inkit-connector.labels" -}}
helm.sh/chart: {{ include "inkit-connector.chart" . }}
{{ include "inkit-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ include "inkit-connector.version" . | quote }}
app.kubernetes.io/component: connector
app.kubernetes.io/part-of: inkit-connector
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The version shown in labels: the image tag, or the chart's appVersion.
*/}}
{{- define "inkit-connector.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The ServiceAccount name.
*/}}
{{- define "inkit-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "inkit-connector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest when a digest is given, repository:tag otherwise.
*/}}
{{- define "inkit-connector.image" -}}
{{- $repo := required "image.repository is required: build the image from the repository's Dockerfile and push it to your registry (see docs/container.md)" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Name of the Secret the chart creates for inline (development) credentials.
*/}}
{{- define "inkit-connector.secretName" -}}
{{- printf "%s-credentials" (include "inkit-connector.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
True ("true") when the chart must create its own Secret: some credential is given inline.
*/}}
{{- define "inkit-connector.createSecret" -}}
{{- $v := .Values }}
{{- if or (and $v.inkit.apiKey (not $v.inkit.existingSecret)) (include "inkit-connector.saslInlineUsername" .) (and $v.kafka.sasl.password (not $v.kafka.sasl.existingSecret)) (and $v.schemaRegistry.basicAuth.userInfo (not $v.schemaRegistry.basicAuth.existingSecret)) }}true{{ end }}
{{- end }}

{{/*
"true" when SASL is on with a mechanism that needs a username and a password.
*/}}
{{- define "inkit-connector.saslPassword" -}}
{{- if has .Values.kafka.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512") }}true{{ end }}
{{- end }}

{{/*
"true" when the SASL username is given inline (it then lives in the chart's Secret).
*/}}
{{- define "inkit-connector.saslInlineUsername" -}}
{{- if and (include "inkit-connector.saslPassword" .) .Values.kafka.sasl.username }}true{{ end }}
{{- end }}

{{/*
Secret references: {"name": ..., "key": ...} for each credential, as JSON (empty when unused).
*/}}
{{- define "inkit-connector.apiKeyRef" -}}
{{- if .Values.inkit.existingSecret }}
{{- dict "name" .Values.inkit.existingSecret "key" .Values.inkit.existingSecretKey | toJson }}
{{- else }}
{{- dict "name" (include "inkit-connector.secretName" .) "key" "inkit-api-key" | toJson }}
{{- end }}
{{- end }}

{{- define "inkit-connector.saslUsernameRef" -}}
{{- if include "inkit-connector.saslInlineUsername" . }}
{{- dict "name" (include "inkit-connector.secretName" .) "key" "kafka-sasl-username" | toJson }}
{{- else }}
{{- dict "name" .Values.kafka.sasl.existingSecret "key" .Values.kafka.sasl.usernameKey | toJson }}
{{- end }}
{{- end }}

{{- define "inkit-connector.saslPasswordRef" -}}
{{- if .Values.kafka.sasl.existingSecret }}
{{- dict "name" .Values.kafka.sasl.existingSecret "key" .Values.kafka.sasl.passwordKey | toJson }}
{{- else }}
{{- dict "name" (include "inkit-connector.secretName" .) "key" "kafka-sasl-password" | toJson }}
{{- end }}
{{- end }}

{{- define "inkit-connector.registryAuthRef" -}}
{{- $ba := .Values.schemaRegistry.basicAuth }}
{{- if $ba.existingSecret }}
{{- dict "name" $ba.existingSecret "key" $ba.existingSecretKey | toJson }}
{{- else if $ba.userInfo }}
{{- dict "name" (include "inkit-connector.secretName" .) "key" "schema-registry-user-info" | toJson }}
{{- end }}
{{- end }}

{{/*
librdkafka passthrough env name: "session.timeout.ms" -> "KAFKA_CONFIG_SESSION_TIMEOUT_MS".
*/}}
{{- define "inkit-connector.kafkaConfigEnv" -}}
{{- printf "KAFKA_CONFIG_%s" (. | upper | replace "." "_") }}
{{- end }}

{{/*
A value as env text. Helm reads numbers from values files as float64, which would print 1000000 as
"1e+06" (librdkafka refuses that for integer properties): whole numbers print as integers.
*/}}
{{- define "inkit-connector.envText" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- . | int64 | toString }}
{{- else }}
{{- . | toString }}
{{- end }}
{{- end }}

{{/*
Name of a monitoring object (ServiceMonitor, PodMonitor, PrometheusRule, dashboard ConfigMap).
Args: list <root context> <target namespace>. In the release's namespace it is the full name; in
another one (a shared `monitoring` namespace) it is prefixed with the release's namespace, so
same-named releases of different namespaces do not overwrite each other's objects there.
*/}}
{{- define "inkit-connector.monitoringName" -}}
{{- $root := index . 0 }}
{{- $ns := index . 1 }}
{{- if eq $ns $root.Release.Namespace }}
{{- include "inkit-connector.fullname" $root }}
{{- else }}
{{- printf "%s-%s" $root.Release.Namespace (include "inkit-connector.fullname" $root) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The Secrets the pods read, comma-separated and sorted: the reloader annotation's value (empty when
secretReloader is off).
*/}}
{{- define "inkit-connector.reloadSecrets" -}}
{{- if .Values.secretReloader.enabled }}
{{- $names := list (include "inkit-connector.apiKeyRef" . | fromJson).name }}
{{- if include "inkit-connector.saslPassword" . }}
{{- $names = append $names (include "inkit-connector.saslUsernameRef" . | fromJson).name }}
{{- $names = append $names (include "inkit-connector.saslPasswordRef" . | fromJson).name }}
{{- end }}
{{- with include "inkit-connector.registryAuthRef" . }}
{{- $names = append $names (. | fromJson).name }}
{{- end }}
{{- range $_, $ref := .Values.kafka.configFromSecrets }}
{{- $names = append $names $ref.name }}
{{- end }}
{{- $names | uniq | sortAlpha | join "," }}
{{- end }}
{{- end }}

{{/*
"true" when the connector reads the Schema Registry: the confluent-avro and confluent-json formats do.
*/}}
{{- define "inkit-connector.usesRegistry" -}}
{{- if and (hasPrefix "confluent-" .Values.kafka.valueFormat) .Values.schemaRegistry.url }}true{{ end }}
{{- end }}

{{/*
Labels of the `helm test` pod: not the selector labels, so that neither the Service nor the
NetworkPolicy's podSelector nor the PodDisruptionBudget counts it as a connector pod.
*/}}
{{- define "inkit-connector.testLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end }}
