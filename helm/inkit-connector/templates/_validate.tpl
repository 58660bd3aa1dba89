{{/*
Cross-field checks that values.schema.json cannot express. Each failure names the values to fix.
Included once, from deployment.yaml.
*/}}
{{- define "inkit-connector.validate" -}}
{{- $v := .Values }}

{{- /* Required connection settings. */}}
{{- if not $v.kafka.bootstrapServers }}
{{- fail "kafka.bootstrapServers is required (Kafka brokers, host:port[,host:port])" }}
{{- end }}
{{- if not $v.kafka.topic }}
{{- fail "kafka.topic is required (the topic of Segment Identify events)" }}
{{- end }}
{{- if and $v.kafka.dlqTopic (eq $v.kafka.dlqTopic $v.kafka.topic) }}
{{- fail "kafka.dlqTopic must differ from kafka.topic" }}
{{- end }}
{{- if and $v.ledger.topic (has $v.ledger.topic (list $v.kafka.topic $v.kafka.dlqTopic)) }}
{{- fail "ledger.topic must differ from kafka.topic and kafka.dlqTopic" }}
{{- end }}
{{- if and (eq $v.inkit.ambiguousSendPolicy "dead-letter") (not $v.ledger.enabled) }}
{{- fail "inkit.ambiguousSendPolicy=dead-letter needs ledger.enabled=true (its intents live in the sent-ledger)" }}
{{- end }}
{{- if and (hasPrefix "confluent-" $v.kafka.valueFormat) (not $v.schemaRegistry.url) }}
{{- fail (printf "kafka.valueFormat=%s needs schemaRegistry.url (or set kafka.valueFormat to avro or json)" $v.kafka.valueFormat) }}
{{- end }}

{{- /* Credentials: exactly one source each. */}}
{{- if and $v.inkit.apiKey $v.inkit.existingSecret }}
{{- fail "set only one of inkit.existingSecret (recommended) and inkit.apiKey (development only)" }}
{{- end }}
{{- if not (or $v.inkit.apiKey $v.inkit.existingSecret) }}
{{- fail "an Inkit API key is required: set inkit.existingSecret (a Secret with the key under inkit.existingSecretKey, default api-key) or, for development only, inkit.apiKey" }}
{{- end }}
{{- if and $v.schemaRegistry.basicAuth.userInfo $v.schemaRegistry.basicAuth.existingSecret }}
{{- fail "set only one of schemaRegistry.basicAuth.existingSecret and schemaRegistry.basicAuth.userInfo" }}
{{- end }}
{{- $sasl := $v.kafka.sasl }}
{{- if $sasl.mechanism }}
{{- if not (has $sasl.securityProtocol (list "SASL_SSL" "SASL_PLAINTEXT")) }}
{{- fail (printf "kafka.sasl.mechanism=%s needs kafka.sasl.securityProtocol SASL_SSL (or SASL_PLAINTEXT)" $sasl.mechanism) }}
{{- end }}
{{- end }}
{{- if include "inkit-connector.saslPassword" . }}
{{- if and $sasl.password $sasl.existingSecret }}
{{- fail "set only one of kafka.sasl.existingSecret and kafka.sasl.password" }}
{{- end }}
{{- if not (or $sasl.password $sasl.existingSecret) }}
{{- fail (printf "kafka.sasl.mechanism=%s needs a password: set kafka.sasl.existingSecret (key kafka.sasl.passwordKey) or, for development only, kafka.sasl.password" $sasl.mechanism) }}
{{- end }}
{{- if not (or $sasl.username $sasl.existingSecret) }}
{{- fail (printf "kafka.sasl.mechanism=%s needs a username: set kafka.sasl.username or kafka.sasl.existingSecret (key kafka.sasl.usernameKey)" $sasl.mechanism) }}
{{- end }}
{{- end }}

{{- /* librdkafka passthrough: no secrets in the ConfigMap, nothing the connector or kafka.sasl owns. */}}
{{- $owned := dict "enable.auto.commit" "offsets are committed by the connector only after delivery" "enable.auto.offset.store" "offsets are stored by the connector only after delivery" "auto.commit.enable" "offsets are committed by the connector only after delivery" "group.id" "use kafka.groupId" "bootstrap.servers" "use kafka.bootstrapServers" "enable.partition.eof" "the connector sets it itself" "sasl.username" "use kafka.sasl.username or kafka.sasl.existingSecret" "sasl.password" "use kafka.sasl.existingSecret (kafka.config lands in a ConfigMap)" }}
{{- if $sasl.mechanism }}{{ $_ := set $owned "sasl.mechanism" "use kafka.sasl.mechanism" }}{{ $_ := set $owned "sasl.mechanisms" "use kafka.sasl.mechanism" }}{{ end }}
{{- if $sasl.securityProtocol }}{{ $_ := set $owned "security.protocol" "use kafka.sasl.securityProtocol" }}{{ end }}
{{- range $key, $_ := $v.kafka.config }}
{{- if hasKey $owned $key }}
{{- fail (printf "kafka.config.%s cannot be set: %s" $key (get $owned $key)) }}
{{- end }}
{{- /* kafka.config lands in a ConfigMap, readable by anyone who may read ConfigMaps. */}}
{{- if regexMatch "(?i)(password|secret|jaas|oauthbearer\\.config|\\.pem$|ssl_key|token|credential)" $key }}
{{- fail (printf "kafka.config.%s looks secret and kafka.config lands in a ConfigMap in clear: set it in kafka.configFromSecrets (a Secret name and key) instead" $key) }}
{{- end }}
{{- end }}
{{- range $key, $ref := $v.kafka.configFromSecrets }}
{{- if hasKey $owned $key }}
{{- fail (printf "kafka.configFromSecrets.%s cannot be set: %s" $key (get $owned $key)) }}
{{- end }}
{{- if hasKey $v.kafka.config $key }}
{{- fail (printf "kafka.%s is set in both kafka.config and kafka.configFromSecrets" $key) }}
{{- end }}
{{- if not (and (kindIs "map" $ref) $ref.name $ref.key) }}
{{- fail (printf "kafka.configFromSecrets.%s needs {name: <Secret>, key: <key in it>}" $key) }}
{{- end }}
{{- end }}

{{- /* Shutdown: the connector's watchdog (connector/cli/run.py: 2 × drain + SHUTDOWN_MARGIN_S 5 s)
must fire, and the final commit land, before Kubernetes' SIGKILL: a 10 s margin above it. */}}
{{- $watchdog := addf (mulf 2 (float64 $v.drainTimeoutSeconds)) 5 }}
{{- if lt (float64 $v.terminationGracePeriodSeconds) (addf $watchdog 10) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least 2 × drainTimeoutSeconds + 15 (%v): on SIGTERM the connector drains for up to drainTimeoutSeconds (%v), commits and leaves the group, and its watchdog gives up after 2 × drain + 5 s (%v); Kubernetes' SIGKILL must come 10 s or more after that" $v.terminationGracePeriodSeconds (addf $watchdog 10) $v.drainTimeoutSeconds $watchdog) }}
{{- end }}

{{- /* Scaling. */}}
{{- if and $v.autoscaling.enabled $v.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are mutually exclusive: both would drive the Deployment's replicas (KEDA creates its own HPA)" }}
{{- end }}
{{- if $v.autoscaling.enabled }}
{{- if gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if not (and $v.resources $v.resources.requests $v.resources.requests.cpu) }}
{{- fail "autoscaling (CPU) needs resources.requests.cpu" }}
{{- end }}
{{- end }}
{{- if $v.keda.enabled }}
{{- if not $v.keda.partitionCount }}
{{- fail "keda.enabled needs keda.partitionCount (the partitions of kafka.topic): replicas never exceed it" }}
{{- end }}
{{- $max := int (default $v.keda.partitionCount $v.keda.maxReplicaCount) }}
{{- if gt $max (int $v.keda.partitionCount) }}
{{- fail (printf "keda.maxReplicaCount (%d) must not exceed keda.partitionCount (%d): a consumer group gives each partition to one member, so extra replicas would sit idle" $max (int $v.keda.partitionCount)) }}
{{- end }}
{{- if gt (int $v.keda.minReplicaCount) $max }}
{{- fail "keda.minReplicaCount must not exceed keda.maxReplicaCount" }}
{{- end }}
{{- $ktls := $v.keda.tls }}
{{- if ne (empty $ktls.certKey) (empty $ktls.keyKey) }}
{{- fail "keda.tls.certKey and keda.tls.keyKey go together (a client certificate and its key)" }}
{{- end }}
{{- if and $ktls.existingSecret (not (has $sasl.securityProtocol (list "SSL" "SASL_SSL"))) }}
{{- fail "keda.tls.existingSecret needs kafka.sasl.securityProtocol SSL or SASL_SSL" }}
{{- end }}
{{- if and $sasl.mechanism (not (include "inkit-connector.saslPassword" .)) (not $v.keda.authenticationRef) }}
{{- fail (printf "keda with kafka.sasl.mechanism=%s needs keda.authenticationRef (a TriggerAuthentication you manage)" $sasl.mechanism) }}
{{- end }}
{{- if not (.Capabilities.APIVersions.Has "keda.sh/v1alpha1") }}
{{- fail "keda.enabled needs the keda.sh/v1alpha1 API (install KEDA; with helm template pass --api-versions keda.sh/v1alpha1)" }}
{{- end }}
{{- end }}

{{- if and $v.metrics.serviceMonitor.enabled $v.metrics.podMonitor.enabled }}
{{- fail "enable only one of metrics.serviceMonitor and metrics.podMonitor: both would scrape every pod twice" }}
{{- end }}
{{- /* Prometheus Operator objects need its CRDs: fail rather than silently render nothing. */}}
{{- $monitoring := or $v.metrics.serviceMonitor.enabled $v.metrics.podMonitor.enabled $v.metrics.prometheusRule.enabled }}
{{- if and $monitoring (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) }}
{{- fail "metrics.serviceMonitor/podMonitor/prometheusRule need the monitoring.coreos.com/v1 API (install the Prometheus Operator CRDs; with helm template pass --api-versions monitoring.coreos.com/v1)" }}
{{- end }}
{{- /* The alerts select the pods' scrape job: without the chart's monitor it is unknown, and a
wrong one would page InkitConnectorAbsent for ever. */}}
{{- $m := $v.metrics }}
{{- if and $m.prometheusRule.enabled (not (or $m.serviceMonitor.enabled $m.podMonitor.enabled $m.prometheusRule.job)) }}
{{- fail "metrics.prometheusRule needs metrics.serviceMonitor or metrics.podMonitor, or metrics.prometheusRule.job (the job label your Prometheus scrapes the pods under): every alert selects it" }}
{{- end }}

{{- /* NetworkPolicy: an egress policy without the brokers would cut the connector off. */}}
{{- if $v.networkPolicy.enabled }}
{{- if not (or $v.networkPolicy.kafka.cidrs $v.networkPolicy.kafka.peers) }}
{{- fail "networkPolicy.enabled needs networkPolicy.kafka.cidrs or networkPolicy.kafka.peers (where the brokers are)" }}
{{- end }}
{{- if and (include "inkit-connector.usesRegistry" .) (not (or $v.networkPolicy.schemaRegistry.cidrs $v.networkPolicy.schemaRegistry.peers)) }}
{{- fail "networkPolicy.enabled with kafka.valueFormat=confluent-avro needs networkPolicy.schemaRegistry.cidrs or networkPolicy.schemaRegistry.peers (where the Schema Registry is)" }}
{{- end }}
{{- if not (or $v.networkPolicy.inkit.cidrs $v.networkPolicy.inkit.peers) }}
{{- fail "networkPolicy.enabled needs networkPolicy.inkit.cidrs or networkPolicy.inkit.peers (where Inkit's API is)" }}
{{- end }}
{{- end }}
{{- end }}
