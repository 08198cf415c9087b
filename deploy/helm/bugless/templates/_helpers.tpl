{{/*
Names, labels and the small computations every template shares.
*/}}

{{- define "bugless.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bugless.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* <fullname>-<component>; called with (dict "ctx" $ "component" "model"). */}}
{{- define "bugless.componentName" -}}
{{- printf "%s-%s" (include "bugless.fullname" .ctx) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bugless.tier" -}}
{{- /* The notifier calls the Model and the Authenticator as the frontends do. */ -}}
{{- if has . (list "web" "api" "notify") -}}frontend{{- else -}}backend{{- end -}}
{{- end -}}

{{/* Labels that select a component's pods: stable across upgrades. */}}
{{- define "bugless.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bugless.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "bugless.labels" -}}
{{ include "bugless.selectorLabels" . }}
app.kubernetes.io/part-of: bugless
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
bugless.dev/tier: {{ include "bugless.tier" .component }}
{{- end -}}

{{/* Labels of the whole release, for objects that belong to no component. */}}
{{- define "bugless.releaseLabels" -}}
app.kubernetes.io/name: {{ include "bugless.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: bugless
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "bugless.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "bugless.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "bugless.image" -}}
{{- $svc := index .ctx.Values .component -}}
{{- $tag := default (default .ctx.Chart.AppVersion .ctx.Values.image.tag) $svc.image.tag -}}
{{- printf "%s/%s:%s" .ctx.Values.image.registry $svc.image.repository $tag -}}
{{- end -}}

{{/*
Seconds Kubernetes waits after deleting a pod before SIGKILL. The countdown
starts before preStop, so it must cover preStop + drain + the longest wait
for in-flight work (graceSeconds; drainTransferSeconds, the bound on
attachment uploads and downloads, for a service that has them), plus a
margin for the interpreter to exit; a value that does not is refused.
*/}}
{{- define "bugless.terminationGracePeriodSeconds" -}}
{{- $svc := index .ctx.Values .component -}}
{{- $inFlight := int (ceil $svc.graceSeconds) -}}
{{- $named := "graceSeconds" -}}
{{- if hasKey $svc "drainTransferSeconds" -}}
{{- $inFlight = max $inFlight (int (ceil $svc.drainTransferSeconds)) -}}
{{- $named = "max(graceSeconds, drainTransferSeconds)" -}}
{{- end -}}
{{- $needed := add (int $svc.preStopSleepSeconds) (int (ceil $svc.drainSeconds)) $inFlight -}}
{{- if kindIs "invalid" $svc.terminationGracePeriodSeconds -}}
{{- add $needed 5 -}}
{{- else if le (int $svc.terminationGracePeriodSeconds) (int $needed) -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + drainSeconds + %s (%v), or the pod is killed mid-drain" .component $svc.terminationGracePeriodSeconds $named $needed) -}}
{{- else -}}
{{- $svc.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{- define "bugless.internalTLSSecret" -}}
{{- $name := index .ctx.Values.internalTLS.secretNames .component -}}
{{- default (printf "%s-internal-tls" (include "bugless.componentName" .)) $name -}}
{{- end -}}

{{/* host:port of the Model or Authenticator, as a frontend dials it. */}}
{{- define "bugless.backendAddress" -}}
{{- $svc := index .ctx.Values .component -}}
{{- $override := index $svc (printf "%sAddress" .target) -}}
{{- if $override -}}
{{- $override -}}
{{- else -}}
{{- $target := index .ctx.Values .target -}}
{{- printf "%s.%s.svc:%v" (include "bugless.componentName" (dict "ctx" .ctx "component" .target)) .ctx.Release.Namespace $target.service.port -}}
{{- end -}}
{{- end -}}

{{- define "bugless.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
fsGroup: {{ .Values.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "bugless.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "bugless.commonEnv" -}}
- name: BUGLESS_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: BUGLESS_LOG_JSON
  value: {{ .Values.logJson | quote }}
{{- with .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "bugless.databaseUrlEnv" -}}
- name: BUGLESS_DATABASE_URL
  valueFrom:
    secretKeyRef:
{{- if .Values.postgresql.cnpg.enabled }}
      name: {{ include "bugless.fullname" . }}-db-app
      key: uri
{{- else }}
      name: {{ .Values.database.urlSecret.name }}
      key: {{ .Values.database.urlSecret.key }}
{{- end }}
{{- end -}}

{{/* The Model's schema (the Authenticator keeps its own, BUGLESS_AUTH_SCHEMA). */}}
{{- define "bugless.modelSchemaEnv" -}}
- name: BUGLESS_DATABASE_SCHEMA
  value: {{ .Values.database.schema | quote }}
{{- end -}}

{{/*
Settings of the shared gRPC server options (bugless_core.grpc.GrpcServerSettings):
BUGLESS_<SERVICE>_{HOST,PORT,METRICS_HOST,METRICS_PORT,DRAIN_SECONDS,GRACE_SECONDS,TLS_*},
and DRAIN_TRANSFER_SECONDS for a service whose values have drainTransferSeconds.
*/}}
{{- define "bugless.grpcServerEnv" -}}
{{- $svc := index .ctx.Values .component -}}
{{- $prefix := printf "BUGLESS_%s_" (upper .component) -}}
- name: {{ $prefix }}HOST
  value: "0.0.0.0"
- name: {{ $prefix }}PORT
  value: {{ $svc.port | quote }}
- name: {{ $prefix }}METRICS_HOST
  value: "0.0.0.0"
- name: {{ $prefix }}METRICS_PORT
  value: {{ $svc.metricsPort | quote }}
- name: {{ $prefix }}DRAIN_SECONDS
  value: {{ $svc.drainSeconds | quote }}
- name: {{ $prefix }}GRACE_SECONDS
  value: {{ $svc.graceSeconds | quote }}
{{- if hasKey $svc "drainTransferSeconds" }}
- name: {{ $prefix }}DRAIN_TRANSFER_SECONDS
  value: {{ $svc.drainTransferSeconds | quote }}
{{- end }}
{{- end -}}

{{/* TLS files of a server, for BUGLESS_<SERVICE>_TLS_CERT/TLS_KEY/CLIENT_CA. */}}
{{- define "bugless.serverTLSEnv" -}}
{{- $prefix := printf "BUGLESS_%s_" (upper .component) -}}
- name: {{ $prefix }}TLS_CERT
  value: {{ printf "%s/tls.crt" .dir }}
- name: {{ $prefix }}TLS_KEY
  value: {{ printf "%s/tls.key" .dir }}
- name: {{ $prefix }}CLIENT_CA
  value: {{ .clientCa }}
{{- end -}}

{{/*
How a frontend reaches the Model and the Authenticator (bugless_core.clients):
addresses, and with internal TLS the CA and this frontend's client certificate.
*/}}
{{- define "bugless.backendClientEnv" -}}
{{- $prefix := printf "BUGLESS_%s_" (upper .component) -}}
{{- /* bugless web serve calls them --tls-*, bugless api serve --service-* (its --tls-* serve bots). */ -}}
{{- $tls := ternary "TLS_" "SERVICE_" (eq .component "web") -}}
- name: {{ $prefix }}MODEL
  value: {{ include "bugless.backendAddress" (dict "ctx" .ctx "component" .component "target" "model") | quote }}
- name: {{ $prefix }}AUTH
  value: {{ include "bugless.backendAddress" (dict "ctx" .ctx "component" .component "target" "auth") | quote }}
{{- if .ctx.Values.internalTLS.enabled }}
- name: {{ $prefix }}{{ $tls }}CA
  value: /etc/bugless/internal-tls/ca.crt
- name: {{ $prefix }}{{ $tls }}CERT
  value: /etc/bugless/internal-tls/tls.crt
- name: {{ $prefix }}{{ $tls }}KEY
  value: /etc/bugless/internal-tls/tls.key
{{- else }}
- name: {{ $prefix }}INSECURE_LOCAL
  value: "true"
{{- end }}
{{- end -}}

{{- define "bugless.internalTLSVolume" -}}
- name: internal-tls
  secret:
    secretName: {{ include "bugless.internalTLSSecret" . }}
    defaultMode: 0440
{{- end -}}

{{/*
Readiness of a gRPC server over grpc.health.v1. Kubelet's native gRPC probe
speaks plaintext only, so a TLS server is asked by the probe script shipped in
the image (deploy/docker/bugless_grpc_health.py) with the given client files.
*/}}
{{- define "bugless.grpcReadinessProbe" -}}
{{- if .tlsDir -}}
exec:
  command:
    - /opt/bugless/bin/python
    - /opt/bugless-probe/bugless_grpc_health.py
    - --port={{ .port }}
    - --ca={{ .tlsDir }}/ca.crt
    - --cert={{ .tlsDir }}/tls.crt
    - --key={{ .tlsDir }}/tls.key
timeoutSeconds: 4
{{- else -}}
grpc:
  port: {{ .port }}
timeoutSeconds: 2
{{- end }}
periodSeconds: 5
failureThreshold: 2
successThreshold: 1
{{- end -}}

{{/*
Liveness and start-up of a gRPC server: a TCP connect. Deliberately not the
health service: it reports NOT_SERVING while a readiness dependency (the
database) is down, and restarting every replica then would turn an outage of
the database into an outage of bugless that outlives it.
*/}}
{{- define "bugless.grpcLivenessProbes" -}}
startupProbe:
  tcpSocket:
    port: grpc
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  tcpSocket:
    port: grpc
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}

{{- define "bugless.checkReplicas" -}}
{{- $svc := index .ctx.Values .component -}}
{{- if lt (int $svc.replicas) 2 -}}
{{- fail (printf "%s.replicas must be 2 or more: one replica is not highly available and blocks node drains" .component) -}}
{{- end -}}
{{- if and $svc.autoscaling.enabled (lt (int $svc.autoscaling.minReplicas) 2) -}}
{{- fail (printf "%s.autoscaling.minReplicas must be 2 or more" .component) -}}
{{- end -}}
{{- end -}}
