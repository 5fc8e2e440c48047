{{- define "nestplane.labels" -}}
app.kubernetes.io/name: nestplane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "nestplane.selector" -}}
app.kubernetes.io/name: nestplane
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
