// Package echo is a gRPC service written by hand, without generated code,
// for the examples and tests of package raftinggrpc: one unary method,
// rafting.example.Echo/Echo, whose messages are protobuf's
// google.protobuf.StringValue.
package echo

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Server answers Echo.
type Server interface {
	Echo(ctx context.Context, in string) (string, error)
}

// Register registers srv on s.
func Register(s *grpc.Server, srv Server) { s.RegisterService(&desc, srv) }

// Call calls Echo over cc.
func Call(ctx context.Context, cc grpc.ClientConnInterface, in string, opts ...grpc.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := cc.Invoke(ctx, "/rafting.example.Echo/Echo", wrapperspb.String(in), out, opts...); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

var desc = grpc.ServiceDesc{
	ServiceName: "rafting.example.Echo",
	HandlerType: (*Server)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				out, err := srv.(Server).Echo(ctx, req.(*wrapperspb.StringValue).GetValue())
				if err != nil {
					return nil, err
				}
				return wrapperspb.String(out), nil
			}
			if icpt == nil {
				return h(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/rafting.example.Echo/Echo"}, h)
		},
	}},
	Metadata: "echo",
}
