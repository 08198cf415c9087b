{{/*
What every stateless service gets, so that no service can miss any of it: the
Deployment (spread, probes, drain, security context), its
PodDisruptionBudget, an optional HorizontalPodAutoscaler, a metrics Service
and an optional ServiceMonitor. Called with (dict "ctx" $ "component" "web");
the component supplies bugless.<component>.{command,ports,env,volumes,volumeMounts,probes}.
*/}}
{{- define "bugless.workload" -}}
{{- $ctx := .ctx -}}
{{- $c := .component -}}
{{- $svc := index $ctx.Values $c -}}
{{- $name := include "bugless.componentName" . -}}
{{- include "bugless.checkReplicas" . -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "bugless.labels" . | nindent 4 }}
spec:
  {{- if not $svc.autoscaling.enabled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  minReadySeconds: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # Never below the wanted capacity: a new pod is ready before an old one drains.
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "bugless.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "bugless.labels" . | nindent 8 }}
      annotations:
        {{- if and $ctx.Values.metrics.podAnnotations $svc.metricsPort }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $svc.metricsPort | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with $svc.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "bugless.serviceAccountName" $ctx }}
      automountServiceAccountToken: false
      # Service links would define BUGLESS_MODEL_PORT=tcp://... in every pod of
      # a release named "bugless", which the CLI would read as its port.
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "bugless.terminationGracePeriodSeconds" . }}
      securityContext:
        {{- include "bugless.podSecurityContext" $ctx | nindent 8 }}
      {{- with $ctx.Values.image.pullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        {{- range $spread := list $ctx.Values.topologySpread.zone $ctx.Values.topologySpread.node }}
        - topologyKey: {{ $spread.topologyKey }}
          maxSkew: {{ $spread.maxSkew }}
          whenUnsatisfiable: {{ $spread.whenUnsatisfiable }}
          matchLabelKeys: [pod-template-hash]
          labelSelector:
            matchLabels:
              {{- include "bugless.selectorLabels" $ | nindent 14 }}
        {{- end }}
      {{- with $svc.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $c }}
          image: {{ include "bugless.image" . }}
          imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
          args:
            {{- include (printf "bugless.%s.args" $c) . | nindent 12 }}
          ports:
            {{- include (printf "bugless.%s.ports" $c) . | nindent 12 }}
            {{- if $svc.metricsPort }}
            - name: metrics
              containerPort: {{ $svc.metricsPort }}
              protocol: TCP
            {{- end }}
          env:
            {{- include "bugless.commonEnv" $ctx | nindent 12 }}
            {{- include (printf "bugless.%s.env" $c) . | nindent 12 }}
            {{- with $svc.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- include (printf "bugless.%s.probes" $c) . | nindent 10 }}
          lifecycle:
            preStop:
              # Keep serving while every node and the ingress controller
              # notice that the pod is terminating; then SIGTERM starts the drain.
              exec:
                command: ["sleep", {{ $svc.preStopSleepSeconds | quote }}]
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- include "bugless.containerSecurityContext" $ctx | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with include (printf "bugless.%s.volumeMounts" $c) . }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with include (printf "bugless.%s.volumes" $c) . }}
        {{- . | nindent 8 }}
        {{- end }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "bugless.labels" . | nindent 4 }}
spec:
  {{- if hasKey $svc.pdb "minAvailable" }}
  minAvailable: {{ $svc.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $svc.pdb.maxUnavailable }}
  {{- end }}
  # A crash-looping pod must not block a node drain.
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "bugless.selectorLabels" . | nindent 6 }}
{{- if $svc.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "bugless.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $svc.autoscaling.minReplicas }}
  maxReplicas: {{ $svc.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $svc.autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      # Scale-downs drain pods; do it slowly.
      stabilizationWindowSeconds: 300
      policies:
        - type: Pods
          value: 1
          periodSeconds: 60
{{- end }}
{{- if $svc.metricsPort }}
---
# Metrics only, never exposed outside the cluster (the API's main Service is a
# LoadBalancer): Prometheus discovers the pods through this headless Service.
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}-metrics
  labels:
    {{- include "bugless.labels" . | nindent 4 }}
    bugless.dev/metrics: "true"
spec:
  type: ClusterIP
  clusterIP: None
  selector:
    {{- include "bugless.selectorLabels" . | nindent 4 }}
  ports:
    - name: metrics
      port: {{ $svc.metricsPort }}
      targetPort: metrics
      protocol: TCP
{{- if $ctx.Values.metrics.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ $name }}
  labels:
    {{- include "bugless.labels" . | nindent 4 }}
    {{- with $ctx.Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "bugless.selectorLabels" . | nindent 6 }}
      bugless.dev/metrics: "true"
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ $ctx.Values.metrics.serviceMonitor.interval }}
{{- end }}
{{- end }}
{{- end -}}
