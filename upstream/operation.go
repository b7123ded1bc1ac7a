package upstream

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
)

// Kind is what an e签宝 operation does to e签宝's state. It decides whether a request
// that may have reached e签宝 can be sent again, and so what an unknown outcome tells the
// caller, how the guard retries it, and what an error says.
type Kind uint8

// The kinds of e签宝 operation.
const (
	// KindCreate makes something at e签宝 that a repeat would make (and bill) again:
	// e签宝 does not de-duplicate. A request that may have arrived is never re-sent.
	KindCreate Kind = iota + 1
	// KindRead changes nothing at e签宝: a repeat is harmless, whatever came back.
	KindRead
	// KindUpload stores bytes under a new file ID: a repeat only leaves an unused file
	// behind, so it is safe to try again.
	KindUpload
)

var kindNames = [...]string{KindCreate: "create", KindRead: "read", KindUpload: "upload"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Repeatable reports whether a request of this kind that may have reached e签宝 can be
// sent again without creating anything twice.
func (k Kind) Repeatable() bool { return k == KindRead || k == KindUpload }

// Operation is one e签宝 call as e签宝 defines it: its method and path, its kind, and the
// name the service labels it with (metrics, log lines, the exactly-once store's keys).
// Every operation is registered once (Register); the simulator and the service derive
// their routes and lists from the registry.
type Operation struct {
	// Name labels the operation, e.g. "psn-realname". It is part of every stored
	// submission's key, so it never changes once released.
	Name string
	// Method and Path are e签宝's, e.g. POST /v3/evidence/evi-point/psn-realname.
	Method, Path string
	Kind         Kind
	// Makes names what a successful call creates, for messages: "the evidence point".
	Makes string
}

var (
	registryMu sync.RWMutex
	registry   = map[string]*Operation{}
)

// Register adds op to the registry and returns it. It panics on a second operation with
// the same name or the same method and path: both are programming errors found at start.
func Register(op Operation) *Operation {
	if op.Name == "" || op.Method == "" || op.Path == "" || op.Kind == 0 || op.Makes == "" {
		panic(fmt.Sprintf("upstream: operation %q is incomplete", op.Name))
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, o := range registry {
		if o.Name == op.Name || (o.Method == op.Method && o.Path == op.Path) {
			panic(fmt.Sprintf("upstream: operation %q registered twice", op.Name))
		}
	}
	registry[op.Name] = &op
	return &op
}

// Operations returns every registered operation, by name.
func Operations() []*Operation {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]*Operation, 0, len(registry))
	for _, o := range registry {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// OperationNamed returns the registered operation called name, or nil.
func OperationNamed(name string) *Operation {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return registry[name]
}

// Request is an e签宝 request body as e签宝's JSON: its own rules (Check, per API
// revision), its encoding (Marshal, once: the bytes signed are the bytes sent), and the
// personal values e签宝 might echo, which are masked out of its messages.
type Request interface {
	Check(rev Revision) error
	Marshal(rev Revision) ([]byte, error)
	PersonalValues() []string
}

// Answer is the data of a successful e签宝 answer. Complete reports what a success lacks
// ("" when nothing: a success without its ID is an answer this service cannot use);
// SetTrace keeps e签宝's trace ID of the call.
type Answer interface {
	Complete() string
	SetTrace(id string)
}

// Send signs and sends req as op and decodes a successful answer's data into an R. The
// caller has checked req (its Check, for the client's Revision) before anything else, so
// that a request e签宝 would refuse claims no key and spends no quota. Every error is an
// Error; for an operation whose Kind is Repeatable, an unknown outcome says a retry is
// safe.
func Send[R any, P interface {
	*R
	Answer
}](ctx context.Context, c *Client, op *Operation, req Request) (P, error) {
	if op.Method != http.MethodPost {
		return nil, &InvalidRequestError{Reason: "only POST operations are sent with a JSON body"}
	}
	body, err := req.Marshal(c.revision)
	if err != nil {
		return nil, err
	}
	out := P(new(R))
	trace, err := c.post(ctx, op.Path, body, req.PersonalValues(), out)
	if err != nil {
		return nil, op.classify(err)
	}
	if reason := out.Complete(); reason != "" {
		return nil, op.classify(&MalformedResponseError{Status: http.StatusOK, Reason: reason, Trace: trace})
	}
	out.SetTrace(trace)
	return out, nil
}

// classify states, on an unknown outcome, what op may have created and whether sending
// it again is safe (its Kind decides).
func (op *Operation) classify(err error) error {
	switch e := err.(type) {
	case *UnknownOutcomeError:
		e.Repeatable, e.Makes = op.Kind.Repeatable(), op.Makes
	case *MalformedResponseError:
		e.Repeatable, e.Makes = op.Kind.Repeatable(), op.Makes
	}
	return err
}
