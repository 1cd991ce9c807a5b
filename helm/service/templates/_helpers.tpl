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

{{- define "service.image" -}}
{{- $repository := .Values.image.repository -}}
{{- if not $repository -}}
{{- $registry := required "set image.registry to where the release workflow pushes (ghcr.io/<owner>/<repo>), or image.repository to a whole image name" .Values.image.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) .Values.service -}}
{{- end -}}
{{- printf "%s:%s" $repository (include "service.tag" .) -}}
{{- end -}}

{{- define "service.secretName" -}}
{{- .Values.secret.name | default (printf "%s-secrets" .Values.service) -}}
{{- end -}}

{{/* Scheduled backups of the service's database (helm/backup.md). Both
colors share the database, so only the release of backup.color makes them:
"true" there, "" in the other color. */}}
{{- define "service.backupOwner" -}}
{{- if eq .Values.color .Values.backup.color -}}true{{- end -}}
{{- end -}}

{{/* <service>-backup: one per service, whichever color owns it. */}}
{{- define "service.backupName" -}}
{{- $_ := include "service.fullname" . -}}
{{- printf "%s-backup" .Values.service -}}
{{- end -}}

{{/* The backup pods' labels: not the service's selector, so its Service,
PodDisruptionBudget and NetworkPolicy never select them. */}}
{{- define "service.backupSelector" -}}
app.kubernetes.io/name: {{ include "service.backupName" . }}
app.kubernetes.io/component: backup
{{- end -}}

{{- define "service.backupLabels" -}}
{{ include "service.backupSelector" . }}
app.kubernetes.io/instance: {{ include "service.fullname" . }}
app.kubernetes.io/part-of: platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
