package airlockv1

import "strings"

// Name is the lowercase name of a status as planners and the CLI print it:
// ok, denied, pending_approval, invalid, failed, timeout ("unspecified" for
// the zero value).
func (s Status) Name() string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATUS_"))
}

// Name is the lowercase name of an effect: allow, deny, require_approval.
func (e Effect) Name() string {
	return strings.ToLower(strings.TrimPrefix(e.String(), "EFFECT_"))
}
