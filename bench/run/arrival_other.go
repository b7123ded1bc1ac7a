//go:build !linux

package main

import (
	"net"
	"time"
)

// Without SO_TIMESTAMPNS, arrivals are the instants requests are read.
type arrivalConn struct{ net.Conn }

func listenArrivals(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func (c *arrivalConn) takeArrival() time.Time { return time.Time{} }
