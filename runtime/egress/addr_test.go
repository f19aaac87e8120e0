package egress

import (
	"net/netip"
	"regexp"
	"testing"
)

func TestForbidden(t *testing.T) {
	refused := []string{
		"127.0.0.1", "127.255.0.9", "::1", "0.0.0.0", "::", "0.1.2.3",
		"169.254.169.254", "fe80::1", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"fc00::1", "fd12:3456::1", "100.64.0.1", "100.127.255.255", "224.0.0.1", "239.1.1.1", "ff02::1", "ff05::2",
		"255.255.255.255", "240.0.0.1", "192.0.0.8", "198.18.0.1", "192.0.2.10",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.1.2.3", "::127.0.0.1",
		"64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "2002:7f00:1::1", "2002:a9fe:a9fe::", "fec0::1",
	}
	for _, s := range refused {
		if why := Forbidden(netip.MustParseAddr(s)); why == "" {
			t.Errorf("%s is allowed, want it refused", s)
		}
	}
	allowed := []string{"93.184.216.34", "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:93.184.216.34", "64:ff9b::808:808", "2002:808:808::1"}
	for _, s := range allowed {
		if why := Forbidden(netip.MustParseAddr(s)); why != "" {
			t.Errorf("%s is refused as %s, want it allowed", s, why)
		}
	}
	if Forbidden(netip.Addr{}) == "" {
		t.Error("the zero address is allowed")
	}
	if why := Forbidden(netip.MustParseAddr("169.254.169.254")); !regexp.MustCompile("link-local").MatchString(why) {
		t.Errorf("reason %q does not say link-local", why)
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		glob  string
		match []string
		miss  []string
	}{
		{"/**", []string{"/", "/a", "/a/b/c"}, nil},
		{"/api/**", []string{"/api", "/api/", "/api/v1/x"}, []string{"/apix", "/ap", "/other/api/x"}},
		{"/repos/*/issues", []string{"/repos/x/issues", "/repos//issues"}, []string{"/repos/x/y/issues", "/repos/x/issues/1"}},
		{"/a/**/z", []string{"/a/b/z", "/a/b/c/z", "/a//z"}, []string{"/a/z/y"}},
		{"/v1.0/x", []string{"/v1.0/x"}, []string{"/v1a0/x"}},
		{"/exact", []string{"/exact"}, []string{"/exact/", "/exactly"}},
		{"/files/*.json", []string{"/files/a.json"}, []string{"/files/a/b.json", "/files/a.jsonx"}},
	}
	for _, c := range cases {
		re := compileGlob(c.glob)
		for _, p := range c.match {
			if !re.MatchString(p) {
				t.Errorf("glob %s does not match %s", c.glob, p)
			}
		}
		for _, p := range c.miss {
			if re.MatchString(p) {
				t.Errorf("glob %s matches %s", c.glob, p)
			}
		}
	}
}
