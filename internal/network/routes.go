package network

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the routes Routes manages. The kernel keeps a
// route's protocol number and lets dumps filter on it, so skiff finds its
// own routes after a restart without any state file and leaves everyone
// else's alone. 147 is unassigned in iproute2's rt_protos; see skiff's
// routes with `ip route show proto 147`.
const RouteProtocol netlink.RouteProtocol = 147

// Route sends traffic for Dst (another node's pod CIDR) via the gateway
// Via (that node's address, directly reachable from this one).
type Route struct {
	Dst *net.IPNet
	Via net.IP
}

// Routes keeps the main routing table's skiff routes equal to a wanted
// set. It is not safe for concurrent use; one agent syncs from one loop.
type Routes struct {
	h      *netlink.Handle
	logger *slog.Logger
}

// NewRoutes manages routes through h, or in the calling thread's current
// network namespace when h is nil. A nil logger means slog.Default().
func NewRoutes(h *netlink.Handle, logger *slog.Logger) *Routes {
	if h == nil {
		// A zero Handle opens a socket per request in whatever namespace
		// the calling thread is in, which is what netlink's package-level
		// functions do.
		h = &netlink.Handle{}
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Routes{h: h, logger: logger}
}

// Sync adds or replaces each wanted route and deletes the skiff routes (by
// RouteProtocol) that are no longer wanted. Routes of other origin are
// never changed: a wanted destination that another route in the main
// table already covers exactly is skipped and reported in the error,
// because replacing it could cut the node off (think of a connected
// route for the node's own subnet). Sync carries on past failures and
// returns them joined, so one bad route doesn't hold back the rest.
func (r *Routes) Sync(want []Route) error {
	wanted := make(map[string]Route, len(want))
	for _, rt := range want {
		norm, err := normalise(rt)
		if err != nil {
			return err
		}
		key := norm.Dst.String()
		if _, dup := wanted[key]; dup {
			return fmt.Errorf("sync routes: destination %s wanted twice", key)
		}
		wanted[key] = norm
	}

	existing, err := r.list()
	if err != nil {
		return err
	}
	ours := make(map[string]netlink.Route)
	others := make(map[string]bool)
	for _, rt := range existing {
		key := dstKey(rt)
		if rt.Protocol == RouteProtocol {
			ours[key] = rt
		} else {
			others[key] = true
		}
	}

	var errs []error
	for key, rt := range ours {
		if _, ok := wanted[key]; ok {
			continue
		}
		del := rt
		if err := r.h.RouteDel(&del); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s via %s: %w", key, rt.Gw, err))
			continue
		}
		r.logger.Info("deleted route", "dst", key, "via", rt.Gw.String())
	}
	for key, rt := range wanted {
		if cur, ok := ours[key]; ok && cur.Gw.Equal(rt.Via) {
			continue
		}
		if others[key] {
			errs = append(errs, fmt.Errorf("route %s via %s: another route for that destination exists; not replacing it", key, rt.Via))
			continue
		}
		nl := &netlink.Route{
			Dst:      rt.Dst,
			Gw:       rt.Via,
			Protocol: RouteProtocol,
			Table:    unix.RT_TABLE_MAIN,
		}
		if err := r.h.RouteReplace(nl); err != nil {
			errs = append(errs, fmt.Errorf("replace route %s via %s: %w", key, rt.Via, err))
			continue
		}
		if cur, ok := ours[key]; ok {
			r.logger.Info("changed route", "dst", key, "via", rt.Via.String(), "oldVia", cur.Gw.String())
		} else {
			r.logger.Info("added route", "dst", key, "via", rt.Via.String())
		}
	}
	return errors.Join(errs...)
}

// List returns the skiff routes currently in the main table.
func (r *Routes) List() ([]Route, error) {
	all, err := r.list()
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, rt := range all {
		if rt.Protocol == RouteProtocol && rt.Dst != nil {
			out = append(out, Route{Dst: rt.Dst, Via: rt.Gw})
		}
	}
	return out, nil
}

// list dumps the main table's unicast routes, both families. A dump the
// kernel interrupted because the table changed meanwhile is retried: it
// may miss routes, and missing one of ours would leave it behind forever.
func (r *Routes) list() ([]netlink.Route, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST}
	mask := netlink.RT_FILTER_TABLE | netlink.RT_FILTER_TYPE
	var err error
	for range 5 {
		var routes []netlink.Route
		routes, err = r.h.RouteListFiltered(netlink.FAMILY_ALL, filter, mask)
		if err == nil {
			return routes, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list routes: %w", err)
}

// normalise validates rt and masks its destination to the network
// address, the form the kernel stores and reports.
func normalise(rt Route) (Route, error) {
	if rt.Dst == nil || rt.Via == nil {
		return Route{}, fmt.Errorf("sync routes: route %v needs both Dst and Via", rt)
	}
	ip := rt.Dst.IP.Mask(rt.Dst.Mask)
	if ip == nil {
		return Route{}, fmt.Errorf("sync routes: destination %s: address and mask lengths differ", rt.Dst)
	}
	dst4 := ip.To4() != nil
	via4 := rt.Via.To4() != nil
	if dst4 != via4 {
		return Route{}, fmt.Errorf("sync routes: destination %s and gateway %s are of different IP families", rt.Dst, rt.Via)
	}
	ones, bits := rt.Dst.Mask.Size()
	if bits == 0 {
		return Route{}, fmt.Errorf("sync routes: destination %s: mask is not a prefix", rt.Dst)
	}
	if dst4 {
		ip = ip.To4()
		if bits == 128 {
			ones -= 96
		}
		bits = 32
	}
	return Route{Dst: &net.IPNet{IP: ip, Mask: net.CIDRMask(ones, bits)}, Via: rt.Via}, nil
}

// dstKey names a kernel route's destination like normalise's Dst.String(),
// including the default route, which netlink may report with a nil Dst.
func dstKey(rt netlink.Route) string {
	if rt.Dst != nil {
		return rt.Dst.String()
	}
	if rt.Family == netlink.FAMILY_V6 {
		return "::/0"
	}
	return "0.0.0.0/0"
}
