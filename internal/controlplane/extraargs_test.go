package controlplane

import (
	"errors"
	"testing"
)

func TestValidateExtraArgs(t *testing.T) {
	tests := []struct {
		args []string
		bad  string
	}{
		{nil, ""},
		{[]string{"--oidc-issuer-url=https://issuer.example.com", "--oidc-client-id=kube", "--max-requests-inflight=800"}, ""},
		{[]string{"--event-ttl=2h", "--authorization-mode=AlwaysAllow"}, "--authorization-mode"},
		{[]string{"--anonymous-auth=true"}, "--anonymous-auth"},
		{[]string{"--etcd-servers=https://evil:2379"}, "--etcd-servers"},
		{[]string{"--etcd-compaction-interval=1m", "--etcd-prefix=/tenants/other"}, "--etcd-prefix"},
		{[]string{"--tls-cert-file=/x"}, "--tls-cert-file"},
		{[]string{"--client-ca-file=/x"}, "--client-ca-file"},
		{[]string{"--encryption-provider-config=/x"}, "--encryption-provider-config"},
		{[]string{"--service-account-issuer=x"}, "--service-account-issuer"},
		{[]string{"--requestheader-allowed-names="}, "--requestheader-allowed-names"},
		{[]string{"--token-auth-file=/x"}, "--token-auth-file"},
		{[]string{"--disable-admission-plugins=NodeRestriction"}, "--disable-admission-plugins"},
		{[]string{"--enable-admission-plugins=AlwaysAdmit"}, "--enable-admission-plugins"},
		{[]string{"--feature-gates=AllAlpha=true"}, "--feature-gates"},
		{[]string{"--secure-port=1"}, "--secure-port"},
		{[]string{"--oidc-ca-file=/etc/kubernetes/pki/ca.key"}, "--oidc-ca-file"},
		{[]string{"-v=10"}, "-v"},
		{[]string{"--oidc-issuer-url-x=1"}, "--oidc-issuer-url-x"},
	}
	for _, tt := range tests {
		err := ValidateExtraArgs(tt.args)
		var e *ExtraArgsError
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%v: %v, want accepted", tt.args, err)
		case tt.bad != "" && (!errors.As(err, &e) || e.Flag != tt.bad):
			t.Errorf("%v: %v, want %s refused", tt.args, err, tt.bad)
		}
	}
}
