package jobtemplate

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// errNotPublic is the dialer's refusal of a loopback, link-local, private or
// otherwise internal address.
var errNotPublic = errors.New("address is not public")

var (
	// cgnat is the shared address space (RFC 6598), internal like a private range.
	cgnat = netip.MustParsePrefix("100.64.0.0/10")
	// nat64 embeds an IPv4 address (RFC 6052), which must be public too.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// publicAddr tells whether an address is one the agent may reach for a run
// config that did not name its host in --allowed-template-locations.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback() &&
		!a.IsLinkLocalUnicast() && !cgnat.Contains(a)
}

// newHTTPClient is a client that uses no proxy (the check must see the
// address it dials), follows redirects only within the host and to where
// allow permits, and, when publicOnly, refuses internal addresses at dial
// time, after name resolution.
func newHTTPClient(publicOnly bool, allow func(*url.URL) bool) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	if publicOnly {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !publicAddr(ap.Addr()) {
				return errNotPublic
			}
			return nil
		}
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 20 * time.Second,
			MaxIdleConns:          4,
			IdleConnTimeout:       30 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			first := via[0].URL
			if req.URL.Host != first.Host || (first.Scheme == "https" && req.URL.Scheme != "https") {
				return errOtherHost
			}
			if !allow(req.URL) {
				return errOutsideFence
			}
			if len(via) >= 5 {
				return errTooManyRedirects
			}
			return nil
		},
	}
}

var (
	errOtherHost        = errors.New("redirect to another host")
	errOutsideFence     = errors.New("redirect outside the allowed locations")
	errTooManyRedirects = errors.New("too many redirects")
)

func readHTTP(ctx context.Context, client *http.Client, loc location) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.url.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	switch {
	case errors.Is(err, errNotPublic):
		return nil, shown("resolves to a loopback, link-local or private address, which run config templates may not reach unless the agent's operator allows the host with %s", FlagName)
	case errors.Is(err, errOtherHost):
		return nil, shown("redirects to another host; the agent follows redirects only within the host")
	case errors.Is(err, errOutsideFence):
		return nil, shown("redirects to a location this agent does not allow run configs to use (%s)", FlagName)
	case errors.Is(err, errTooManyRedirects):
		return nil, shown("redirects too many times")
	case err != nil:
		return nil, err
	}
	defer resp.Body.Close()
	if busyStatus(resp.StatusCode) {
		return nil, shownBusy("answered HTTP %d, not 200", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, shown("answered HTTP %d, not 200", resp.StatusCode)
	}
	if resp.ContentLength > MaxSize {
		return nil, shown("is larger than %d bytes (1 MiB), the most the agent reads", MaxSize)
	}
	return readCapped(resp.Body)
}
