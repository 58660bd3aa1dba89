{{/*
The container's configuration, shared by the Deployment and the redrive Job: the ConfigMap, the
Secrets (Inkit key, SASL, registry, secret librdkafka settings) and extraEnv/extraEnvFrom.
*/}}
{{- define "inkit-connector.containerEnv" -}}
{{- $v := .Values -}}
envFrom:
  - configMapRef:
      name: {{ include "inkit-connector.fullname" . }}
  {{- with $v.extraEnvFrom }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
env:
  - name: INKIT_API_KEY
    valueFrom:
      secretKeyRef:
        {{- include "inkit-connector.apiKeyRef" . | fromJson | toYaml | nindent 8 }}
  {{- if include "inkit-connector.saslPassword" . }}
  - name: KAFKA_CONFIG_SASL_USERNAME
    valueFrom:
      secretKeyRef:
        {{- include "inkit-connector.saslUsernameRef" . | fromJson | toYaml | nindent 8 }}
  - name: KAFKA_CONFIG_SASL_PASSWORD
    valueFrom:
      secretKeyRef:
        {{- include "inkit-connector.saslPasswordRef" . | fromJson | toYaml | nindent 8 }}
  {{- end }}
  {{- range $key, $ref := $v.kafka.configFromSecrets }}
  - name: {{ include "inkit-connector.kafkaConfigEnv" $key }}
    valueFrom:
      secretKeyRef:
        name: {{ $ref.name }}
        key: {{ $ref.key }}
  {{- end }}
  {{- with include "inkit-connector.registryAuthRef" . }}
  - name: SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO
    valueFrom:
      secretKeyRef:
        {{- . | fromJson | toYaml | nindent 8 }}
  {{- end }}
  {{- with $v.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
