{{/* The name of everything this release makes: <service>-<color>. */}}
{{- define "service.fullname" -}}
{{- if not (has .Values.service (list "auth" "orders" "payments" "notifications")) -}}
{{- fail (printf "service must be auth, orders, payments or notifications, got %q" .Values.service) -}}
{{- end -}}
{{- if not (has .Values.color (list "blue" "green")) -}}
{{- fail (printf "color must be blue or green, got %q" .Values.color) -}}
{{- end -}}
{{- printf "%s-%s" .Values.service .Values.color -}}
{{- end -}}

{{/* Labels that select this color's pods. */}}
{{- define "service.selector" -}}
app.kubernetes.io/name: {{ .Values.service }}
platform/color: {{ .Values.color }}
{{- end -}}

{{- define "service.labels" -}}
{{ include "service.selector" . }}
app.kubernetes.io/instance: {{ include "service.fullname" . }}
app.kubernetes.io/version: {{ include "service.tag" . | quote }}
app.kubernetes.io/part-of: platform
app.kubernetes.io/component: service
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "service.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "service.secretName" -}}
{{- .Values.secret.name | default (printf "%s-secrets" .Values.service) -}}
{{- end -}}
