package printing

import (
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Listing limits: a listing of 10,000 Jobs and their pods is about 40 pages
// at the default chunk size, which client-go's default limiter (5 requests a
// second, bursts of 10) would stretch by six seconds. The listings only read;
// the API server's priority and fairness guards it from bursts.
const (
	ListQPS   = 50
	ListBurst = 100
)

// ListClient returns a client for the listing commands: protobuf, much
// cheaper to decode for big lists, and the listing limits.
func ListClient(cfg *rest.Config) (kubernetes.Interface, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.QPS, cfg.Burst = ListQPS, ListBurst
	return kubernetes.NewForConfig(cfg)
}
