//go:build !linux

package esignsim

import (
	"context"
	"net"
	"time"
)

// ListenArrivals is net.Listen: without SO_TIMESTAMPNS, requests have no arrival stamp.
func ListenArrivals(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// ArrivalConnContext returns ctx.
func ArrivalConnContext(ctx context.Context, _ net.Conn) context.Context { return ctx }

// TakeArrival reports no arrival: the caller falls back to when it read the request.
func TakeArrival(context.Context) (time.Time, bool) { return time.Time{}, false }
