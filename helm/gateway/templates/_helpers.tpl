{{- define "gateway.selector" -}}
app.kubernetes.io/name: gateway
{{- end -}}

{{- define "gateway.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "gateway.image" -}}
{{- $repository := .Values.image.repository -}}
{{- if not $repository -}}
{{- $registry := required "set image.registry to where the release workflow pushes (ghcr.io/<owner>/<repo>), or image.repository to a whole image name" .Values.image.registry -}}
{{- $repository = printf "%s/gateway" (trimSuffix "/" $registry) -}}
{{- end -}}
{{- printf "%s:%s" $repository (include "gateway.tag" .) -}}
{{- end -}}

{{- define "gateway.labels" -}}
{{ include "gateway.selector" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "gateway.tag" . | quote }}
app.kubernetes.io/part-of: platform
app.kubernetes.io/component: gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The first routing document: every service at blue 100%, both colors
found through their headless Services (k8s:<service>-<color>:<port>). */}}
{{- define "gateway.routes" -}}
{{- $services := dict -}}
{{- range $name, $port := .Values.routing.services -}}
{{- $endpoints := dict "blue" (list (printf "k8s:%s-blue:%d" $name (int $port))) "green" (list (printf "k8s:%s-green:%d" $name (int $port))) -}}
{{- $_ := set $services $name (dict "endpoints" $endpoints "weights" (dict "blue" 100 "green" 0)) -}}
{{- end -}}
{{- dict "generation" 0 "services" $services | toPrettyJson -}}
{{- end -}}
