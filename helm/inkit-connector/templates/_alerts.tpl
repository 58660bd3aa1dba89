{{/*
The chart's alert rules, built from metrics.prometheusRule (per alert: enabled, for, severity,
labels, thresholds). Rendered into the PrometheusRule; files/prometheus-rules.yaml is this output
for the default values (scripts/render-alert-rules.sh), which promtool's unit tests run against.

Every selector carries the release's scrape job and namespace, so each release alerts on its own
pods only, and two releases in one namespace neither mix nor double their alerts. Prometheus
templates ({{ $labels.x }}, {{ $value }}) are written as Helm raw strings.

One alert per cause: an auth block (AuthBlocked) is left out of NotReady, NoDeliveries and
LagGrowing; a failing dead-letter produce (DeadLetterProduceFailing) out of NoDeliveries.
*/}}

{{/* `job` of the connector's scrape target: what the chart's ServiceMonitor (the Service name)
or PodMonitor (<namespace>/<name>) gives it, unless metrics.prometheusRule.job says otherwise.
(prometheus-operator pkg/prometheus/promcfg.go: a PodMonitor's job is
fmt.Sprintf("%s/%s", m.GetNamespace(), m.GetName()) without a jobLabel; a ServiceMonitor's is the
Service name.) */}}
{{- define "inkit-connector.scrapeJob" -}}
{{- $m := .Values.metrics }}
{{- if $m.prometheusRule.job }}
{{- $m.prometheusRule.job }}
{{- else if $m.podMonitor.enabled }}
{{- $ns := default .Release.Namespace $m.podMonitor.namespace }}
{{- printf "%s/%s" $ns (include "inkit-connector.monitoringName" (list . $ns)) }}
{{- else }}
{{- include "inkit-connector.fullname" . }}
{{- end }}
{{- end }}

{{/* One rule as YAML. Args: dict root, name, values (the alert's block), expr, summary, description. */}}
{{- define "inkit-connector.alertRule" -}}
{{- $p := .root.Values.metrics.prometheusRule }}
{{- $labels := merge (dict "severity" .values.severity) (deepCopy (default (dict) .values.labels)) (deepCopy (default (dict) $p.alertLabels)) }}
{{- $rule := dict "alert" .name "expr" .expr "for" .values.for "labels" $labels }}
{{- $runbook := printf "%s#%s" (trimSuffix "/" $p.runbookBaseUrl) (lower .name) }}
{{- $_ := set $rule "annotations" (dict "summary" .summary "description" .description "runbook_url" $runbook) }}
{{- toYaml $rule }}
{{- end }}

{{- define "inkit-connector.alertGroups" -}}
{{- $v := .Values }}
{{- $a := $v.metrics.prometheusRule.alerts }}
{{- $s := printf "job=%q, namespace=%q" (include "inkit-connector.scrapeJob" .) .Release.Namespace }}
{{- $authBlocked := printf "max by (namespace) (inkit_connector_auth_blocked{%s}) == 1" $s }}
{{- $rules := list }}

{{- /* The release is gone: no scrape target at all (pods Pending, deleted, scaled to 0). Not
rendered when the chart itself runs zero replicas (replicaCount 0, KEDA minReplicaCount 0). */}}
{{- $zero := or (and (not $v.autoscaling.enabled) (not $v.keda.enabled) (eq (int $v.replicaCount) 0)) (and $v.keda.enabled (eq (int $v.keda.minReplicaCount) 0)) }}
{{- with $a.absent }}{{ if and .enabled (not $zero) }}
{{- $expr := printf "absent_over_time(up{%s}[%s])\n" $s .window }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorAbsent" "values" . "expr" $expr
  "summary" `No inkit-connector target of job {{ $labels.job }} in {{ $labels.namespace }}.`
  "description" (printf `Prometheus has had no scrape target for job {{ $labels.job }} in namespace {{ $labels.namespace }} for more than %s: the pods are gone (Pending, deleted, scaled to 0) or no longer scraped, and nothing is delivered.` .window)) | fromYaml) }}
{{- end }}{{ end }}

{{- with $a.down }}{{ if .enabled }}
{{- $expr := printf "up{%s} == 0\n" $s }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorDown" "values" . "expr" $expr
  "summary" `Connector target {{ $labels.instance }} is down.`
  "description" (printf `Prometheus has failed to scrape {{ $labels.job }} at {{ $labels.instance }} for more than %s: the pod is crashing, not started, or its metrics port is unreachable.` .for)) | fromYaml) }}
{{- end }}{{ end }}

{{- /* Broker view (group_lag.py): every partition, whoever owns it; max over the replicas that
all export it. The floor keeps a tiny or idle topic quiet. */}}
{{- with $a.lagGrowing }}{{ if .enabled }}
{{- $lag := printf "sum by (namespace, topic) (max by (namespace, topic, partition) (inkit_connector_group_lag_records{%s}))" $s }}
{{- $growth := printf "sum by (namespace, topic) (max by (namespace, topic, partition) (delta(inkit_connector_group_lag_records{%s}[%s])))" $s .window }}
{{- $expr := printf "%s > %s\nand\n%s > 0\nunless on (namespace)\n%s\n" $lag (include "inkit-connector.envText" .minLag) $growth $authBlocked }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorLagGrowing" "values" . "expr" $expr
  "summary" `Consumer lag on {{ $labels.topic }} keeps growing in {{ $labels.namespace }}.`
  "description" (printf `The group's lag on topic {{ $labels.topic }} has grown over %s, for more than %s, and is now {{ $value | printf "%%.0f" }} records (alert floor %s): the connector falls behind the producers.` .window .for (include "inkit-connector.envText" .minLag))) | fromYaml) }}
{{- end }}{{ end }}

{{- with $a.noDeliveries }}{{ if .enabled }}
{{- $committed := printf "max by (namespace, topic, partition) (inkit_connector_group_committed_offset{%s}" $s }}
{{- $expr := printf "max by (namespace, topic, partition) (inkit_connector_group_lag_records{%s}) > %s\nand\n(\n  %s)\n  -\n  %s offset %s)\n) == 0\nunless on (namespace)\n%s\nunless on (namespace)\nsum by (namespace) (increase(inkit_connector_dead_letter_produce_failures_total{%s}[%s])) > 0\n" $s (include "inkit-connector.envText" .minLag) $committed $committed .window $authBlocked $s .window }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorNoDeliveries" "values" . "expr" $expr
  "summary" `Partition {{ $labels.topic }}/{{ $labels.partition }} makes no progress in {{ $labels.namespace }}.`
  "description" (printf `{{ $value | printf "%%.0f" }} records wait on partition {{ $labels.partition }} of {{ $labels.topic }} (floor %s) and the group's committed offset there has not moved in %s: its owner is stalled or gone.` (include "inkit-connector.envText" .minLag) .window)) | fromYaml) }}
{{- end }}{{ end }}

{{- with $a.deadLettering }}{{ if .enabled }}
{{- $sel := printf "inkit_connector_records_total{%s, outcome=\"dead_lettered\"}" $s }}
{{- $expr := printf "sum by (namespace, reason) (increase(%s[%s])) > %s\nor\nsum by (namespace, reason) (%s unless %s offset %s) > %s\n" $sel .window (include "inkit-connector.envText" .minRecords) $sel $sel .window (include "inkit-connector.envText" .minRecords) }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorDeadLettering" "values" . "expr" $expr
  "summary" `Records dead-lettered in {{ $labels.namespace }} ({{ $labels.reason }}).`
  "description" (printf `About {{ $value | printf "%%.0f" }} records with reason {{ $labels.reason }} went to the dead-letter topic in the last %s: Inkit or the decoder refused them and they were not delivered.` .window)) | fromYaml) }}
{{- end }}{{ end }}

{{- with $a.deadLetterProduceFailing }}{{ if .enabled }}
{{- $expr := printf "sum by (namespace, pod) (increase(inkit_connector_dead_letter_produce_failures_total{%s}[%s])) > 0\n" $s .window }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorDeadLetterProduceFailing" "values" . "expr" $expr
  "summary" `Dead-letter produce failing on {{ $labels.namespace }}/{{ $labels.pod }}.`
  "description" (printf `Dead-letter produces have kept failing on pod {{ $labels.pod }} for more than %s ({{ $value | printf "%%.0f" }} in the last %s): the affected partitions cannot commit and their lag grows.` .for .window)) | fromYaml) }}
{{- end }}{{ end }}

{{- /* Issue #15: a delivery finishes only when its sent-ledger record lands; while the ledger
cannot be written, nothing is committed and delivery stops at MAX_UNCOMMITTED_RECORDS. */}}
{{- with $a.ledgerWriteFailing }}{{ if .enabled }}
{{- $expr := printf "sum by (namespace, pod) (increase(inkit_connector_ledger_writes_total{%s, result=\"failed\"}[%s])) > 0\n" $s .window }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorLedgerWriteFailing" "values" . "expr" $expr
  "summary" `Sent-ledger writes failing on {{ $labels.namespace }}/{{ $labels.pod }}.`
  "description" (printf `Sent-ledger writes have kept failing on pod {{ $labels.pod }} for more than %s ({{ $value | printf "%%.0f" }} in the last %s): deliveries are not finished or committed until their ledger record lands, so delivery stops at MAX_UNCOMMITTED_RECORDS.` .for .window)) | fromYaml) }}
{{- end }}{{ end }}

{{- with $a.authBlocked }}{{ if .enabled }}
{{- $expr := printf "max by (namespace, pod) (inkit_connector_auth_blocked{%s}) == 1\n" $s }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorAuthBlocked" "values" . "expr" $expr
  "summary" `Inkit refuses the API key of {{ $labels.namespace }}/{{ $labels.pod }}.`
  "description" (printf `Pod {{ $labels.pod }} has been blocked by 401/403 answers from Inkit for more than %s; it paused all partitions and reports not ready.` .for)) | fromYaml) }}
{{- end }}{{ end }}

{{- with $a.breakerOpen }}{{ if .enabled }}
{{- $expr := printf "max by (namespace, pod) (inkit_connector_breaker_open{%s}) == 1\n" $s }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorBreakerOpen" "values" . "expr" $expr
  "summary" `Circuit breaker open on {{ $labels.namespace }}/{{ $labels.pod }}.`
  "description" (printf `Pod {{ $labels.pod }} has held records failing for one reason for more than %s instead of dead-lettering them; delivery is paused. Its log line "circuit breaker open" names the reason and the likely cause.` .for)) | fromYaml) }}
{{- end }}{{ end }}

{{- with $a.highErrorRate }}{{ if .enabled }}
{{- $all := printf "sum by (namespace) (rate(inkit_connector_http_requests_total{%s}[%s]))" $s .window }}
{{- $expr := printf "(\n  sum by (namespace) (rate(inkit_connector_http_requests_total{%s, code=~\"5..|timeout|connection_error\"}[%s]))\n  /\n  %s\n) > %s\nand\n%s > %s\n" $s .window $all (include "inkit-connector.envText" .ratio) $all (include "inkit-connector.envText" .minRequestRate) }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorHighErrorRate" "values" . "expr" $expr
  "summary" `Many failing requests to Inkit in {{ $labels.namespace }}.`
  "description" (printf `{{ $value | humanizePercentage }} of the requests to Inkit failed with a 5xx, a timeout or a connection error over the last %s (threshold %g %%).` .window (mulf .ratio 100))) | fromYaml) }}
{{- end }}{{ end }}

{{- with $a.notReady }}{{ if .enabled }}
{{- $expr := printf "max by (namespace, pod) (inkit_connector_ready{%s}) == 0\nunless on (namespace, pod)\nmax by (namespace, pod) (inkit_connector_auth_blocked{%s}) == 1\n" $s $s }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorNotReady" "values" . "expr" $expr
  "summary" `Connector pod {{ $labels.namespace }}/{{ $labels.pod }} not ready.`
  "description" (printf `Pod {{ $labels.pod }} has reported not ready for more than %s without being auth-blocked: it has no partitions assigned (more replicas than partitions, or a rebalance that does not settle).` .for)) | fromYaml) }}
{{- end }}{{ end }}

{{- /* Issue #13: no stall is silent. Per partition, the age of its oldest unfinished record
and what holds it (the processor's own view; the broker's view is NoDeliveries). */}}
{{- with $a.recordStuck }}{{ if .enabled }}
{{- $expr := printf "max by (namespace, pod, topic, partition, holder) (inkit_connector_oldest_unfinished_age_seconds{%s}) > %s\n" $s (include "inkit-connector.envText" .minAgeSeconds) }}
{{- $rules = append $rules (include "inkit-connector.alertRule" (dict "root" $ "name" "InkitConnectorRecordStuck" "values" . "expr" $expr
  "summary" `A record of {{ $labels.topic }}[{{ $labels.partition }}] is stuck in {{ $labels.namespace }}.`
  "description" (printf `On pod {{ $labels.pod }}, the oldest unfinished record of {{ $labels.topic }}[{{ $labels.partition }}] has been unfinished for over %s s, held by "{{ $labels.holder }}". No commit can pass it: a restart re-reads the partition from there.` (include "inkit-connector.envText" .minAgeSeconds))) | fromYaml) }}
{{- end }}{{ end }}

{{- toYaml (list (dict "name" "inkit-connector" "rules" $rules)) }}
{{- end }}
