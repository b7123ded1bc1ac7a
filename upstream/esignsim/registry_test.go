package esignsim

import (
	"testing"

	"github.com/esign-evidence/esign-evidence/upstream"
)

// Every e签宝 operation the service can call is answered by the simulator: one missing
// would make the demo and every test of it answer 404 silently.
func TestEveryOperationIsSimulated(t *testing.T) {
	ops := upstream.Operations()
	if len(ops) < 2 {
		t.Fatalf("registry holds %d operations", len(ops))
	}
	for _, op := range ops {
		if handlers[op.Name] == nil {
			t.Errorf("operation %q (%s %s) has no simulator handler", op.Name, op.Method, op.Path)
		}
	}
	for name := range handlers {
		if upstream.OperationNamed(name) == nil {
			t.Errorf("simulator handles %q, which is not a registered operation", name)
		}
	}
}
