{{/*
The names below are fixed: `kubinception install` uses the same ones
(internal/install), and tests, tools and docs find the operator by them.
*/}}

{{- define "kubinception.name" -}}kubinception-manager{{- end }}

{{- define "kubinception.namespace" -}}kubinception-system{{- end }}

{{- define "kubinception.labels" -}}
app.kubernetes.io/managed-by: kubinception
app.kubernetes.io/name: {{ include "kubinception.name" . }}
{{- end }}

{{- define "kubinception.consoleLabels" -}}
app.kubernetes.io/managed-by: kubinception
app.kubernetes.io/name: kubinception-console
{{- end }}

{{- define "kubinception.frontDoorLabels" -}}
app.kubernetes.io/managed-by: kubinception
app.kubernetes.io/name: kubinception-frontdoor
{{- end }}

{{/* The operator image: repository@digest, or repository:tag. */}}
{{- define "kubinception.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ required "image.tag (or image.digest) must be set: no kubinception image is published; give the one you built or imported (on the local admin cluster, `kubinception install --dry-run -o yaml | grep image:` shows it)" .Values.image.tag }}
{{- end -}}
{{- end }}

{{/* Checks the values that the schema cannot check alone. */}}
{{- define "kubinception.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection) -}}
{{- fail (printf "replicas %d needs leaderElection: without it every replica would reconcile the same tenants" (int .Values.replicas)) -}}
{{- end -}}
{{- if and (not .Values.namespace.create) (ne .Release.Namespace (include "kubinception.namespace" .)) -}}
{{- fail (printf "the operator runs in %s: install the release there (helm install -n %s --create-namespace), or set namespace.create=true to have the chart create it" (include "kubinception.namespace" .) (include "kubinception.namespace" .)) -}}
{{- end -}}
{{- if and .Values.backup.hostPath .Values.backup.volumeClaim -}}
{{- fail "backup.hostPath and backup.volumeClaim are both set: give one backup target" -}}
{{- end -}}
{{- if and .Values.defaultDatastore.enabled (not .Values.defaultDatastore.endpoints) -}}
{{- fail "defaultDatastore.enabled needs defaultDatastore.endpoints: the members' client URLs, such as https://10.0.0.1:2379" -}}
{{- end -}}
{{- end }}
