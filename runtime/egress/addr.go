package egress

import (
	"net/netip"
)

// forbiddenPrefixes are the special-purpose ranges a tool may not reach
// unless a rule names the literal address: beyond what netip's predicates
// cover (loopback, private, link-local, multicast, unspecified).
var forbiddenPrefixes = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "a \"this network\" address (0.0.0.0/8)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT address (100.64.0.0/10)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address (192.0.0.0/24)"},
	{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address (192.0.2.0/24)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address (198.18.0.0/15)"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address (198.51.100.0/24)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address (203.0.113.0/24)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved or broadcast address (240.0.0.0/4)"},
	{netip.MustParsePrefix("::/96"), "an IPv4-compatible IPv6 address (::/96)"},
	{netip.MustParsePrefix("100::/64"), "a discard-only address (100::/64)"},
	{netip.MustParsePrefix("2001:db8::/32"), "a documentation address (2001:db8::/32)"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address (fec0::/10)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a local-use NAT64 address (64:ff9b:1::/48)"},
}

// Prefixes of IPv6 addresses that carry an IPv4 address the check must
// look through: NAT64 (the last 32 bits) and 6to4 (bits 16 to 47).
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// Forbidden reports why a is an address a tool may not reach without an
// explicit rule for it ("" when it may): loopback, link-local, private,
// carrier-grade NAT, multicast, unspecified and other special-purpose
// ranges, also when written as IPv4-mapped, NAT64 or 6to4 IPv6 addresses.
func Forbidden(a netip.Addr) string {
	if !a.IsValid() {
		return "an invalid address"
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64Prefix.Contains(a):
			if r := Forbidden(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
				return r + ", embedded in a NAT64 address"
			}
		case sixToFour.Contains(a):
			if r := Forbidden(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
				return r + ", embedded in a 6to4 address"
			}
		}
	}
	switch {
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsLinkLocalUnicast():
		return "a link-local address (169.254.0.0/16, fe80::/10; cloud metadata lives here)"
	case a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast(), a.IsMulticast():
		return "a multicast address"
	case a.IsPrivate():
		return "a private address (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7)"
	}
	for _, p := range forbiddenPrefixes {
		if p.prefix.Contains(a) {
			return p.reason
		}
	}
	return ""
}
