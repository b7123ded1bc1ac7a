// Command floor is the cheapest gRPC front to e签宝 this code base allows: a gRPC server
// whose one handler translates the request (server/translate) and makes the e签宝 call
// with the same upstream client the service uses, and nothing else — no validation,
// logging, metrics, store, quota, breaker or authentication. `make bench` measures it in
// the same run as the service, so the service's cost per call reads as a ratio to it.
//
//	floor -addr 127.0.0.1:9100 -esign-base-url http://127.0.0.1:8000 -app-id bench-app
//
// The app secret comes from FLOOR_APP_SECRET. It stops on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/server/translate"
	"github.com/esign-evidence/esign-evidence/upstream"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:9100", "gRPC listen address")
	baseURL := flag.String("esign-base-url", "http://127.0.0.1:8000", "e签宝 base URL")
	appID := flag.String("app-id", "bench-app", "e签宝 app ID")
	flag.Parse()
	client, err := upstream.New(upstream.Config{BaseURL: *baseURL, AppID: *appID, AppSecret: upstream.Secret(os.Getenv("FLOOR_APP_SECRET"))})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	// The service's one transport setting that lowers cost per call, kept for a fair floor.
	g := grpc.NewServer(grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))))
	evidencev1.RegisterEvidenceServiceServer(g, &proxy{client: client})
	reflection.Register(g) // ghz reads the contract through it; no cost per call
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		g.Stop()
	}()
	return g.Serve(lis)
}

// proxy forwards CreatePersonalEvidencePoint to e签宝.
type proxy struct {
	evidencev1.UnimplementedEvidenceServiceServer
	client *upstream.Client
}

func (p *proxy) CreatePersonalEvidencePoint(ctx context.Context, req *evidencev1.CreatePersonalEvidencePointRequest) (*evidencev1.CreatePersonalEvidencePointResponse, error) {
	res, err := p.client.CreatePsnEvidencePoint(ctx, translate.ToUpstream(req, p.client.Revision()))
	if err != nil {
		return nil, status.Error(codes.Unavailable, "e签宝 call failed")
	}
	return &evidencev1.CreatePersonalEvidencePointResponse{EviPointId: res.EviPointID}, nil
}
