package operator

import (
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"kubinception.dev/kubinception/internal/frontdoor"
)

// frontDoorNamespace confines the operator's cache of ConfigMaps (the
// front door's routes) and Leases (tenants' activity) to the front door's
// namespace, where its Role lets it write them.
func frontDoorNamespace() map[string]cache.Config {
	return map[string]cache.Config{frontdoor.Namespace: {}}
}

// validateFrontDoor checks the front-door settings, naming their flags.
func validateFrontDoor(o Options) error {
	if o.FrontDoorDomain == "" {
		return nil
	}
	if err := frontdoor.ValidateDomain("--front-door-domain", o.FrontDoorDomain); err != nil {
		return err
	}
	if o.FrontDoorPort < 1 || o.FrontDoorPort > 65535 {
		return frontdoor.PortError("--front-door-port", o.FrontDoorPort)
	}
	return nil
}
