package credentials

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/runtime/manifest"
)

// APIVersion and Kind identify a credentials configuration document.
const (
	APIVersion      = "airlock.dev/v1"
	KindCredentials = "Credentials"
)

// MaxConfigBytes bounds the size of a credentials configuration file.
const MaxConfigBytes = 1 << 20

// maxSources bounds the sources one file may define.
const maxSources = 256

var sourceNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Config is the operator's credentials configuration:
//
//	apiVersion: airlock.dev/v1
//	kind: Credentials
//	sources:
//	  - {name: github-readonly, type: oauth2, tokenURL: https://..., revokeURL: https://...,
//	     clientID: airlock, clientSecretFile: secrets/github, scopes: [repo:read]}
//	  - {name: ci-jwt, type: jwt, issuer: airlock, audience: ci.example.org, ttl: 5m}
//	  - {name: dev-token, type: static, env: DEV_TOKEN}
//
// Relative file paths are relative to the configuration file's directory.
type Config struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Sources    []SourceConfig `yaml:"sources"`
}

// SourceConfig is one credential source. Which fields apply depends on
// Type; a field that does not apply to the type is an error.
type SourceConfig struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`

	// static: exactly one of File and Env. oauth2: ClientSecretFile or
	// ClientSecretEnv.
	File string `yaml:"file,omitempty"`
	Env  string `yaml:"env,omitempty"`

	// jwt and spiffe-jwt (Audience); jwt (Issuer, TTL, KeyFile, MaxActive);
	// oauth2 (Audience, optional).
	Issuer    string            `yaml:"issuer,omitempty"`
	Audience  string            `yaml:"audience,omitempty"`
	TTL       manifest.Duration `yaml:"ttl,omitempty"`
	KeyFile   string            `yaml:"keyFile,omitempty"`
	MaxActive int               `yaml:"maxActive,omitempty"`

	// oauth2.
	TokenURL         string            `yaml:"tokenURL,omitempty"`
	RevokeURL        string            `yaml:"revokeURL,omitempty"`
	ClientID         string            `yaml:"clientID,omitempty"`
	ClientSecretFile string            `yaml:"clientSecretFile,omitempty"`
	ClientSecretEnv  string            `yaml:"clientSecretEnv,omitempty"`
	Scopes           []string          `yaml:"scopes,omitempty"`
	Timeout          manifest.Duration `yaml:"timeout,omitempty"`

	// spiffe-jwt.
	Socket  string `yaml:"socket,omitempty"`
	Subject string `yaml:"subject,omitempty"`
}

// keysByType lists the keys each source type accepts besides name and type.
var keysByType = map[string][]string{
	TypeStatic:    {"file", "env"},
	TypeJWT:       {"issuer", "audience", "ttl", "keyFile", "maxActive"},
	TypeOAuth2:    {"tokenURL", "revokeURL", "clientID", "clientSecretFile", "clientSecretEnv", "scopes", "audience", "timeout"},
	TypeSPIFFEJWT: {"audience", "socket", "subject"},
}

// LoadOptions configures LoadWithOptions. The zero value is valid.
type LoadOptions struct {
	// Logger is given to every source. Default: nothing is logged.
	Logger zerolog.Logger
	// LookupEnv reads the executor's environment. Default os.LookupEnv.
	// Static sources with env read the environment at every issue, with
	// os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// HTTPClient is given to oauth2 sources. Default: their own.
	HTTPClient *http.Client
	// Fetcher is given to spiffe-jwt sources (tests). Default: the
	// Workload API.
	Fetcher JWTSVIDFetcher
}

// Load reads the credentials configuration at path and builds its sources.
func Load(path string) (*Registry, error) { return LoadWithOptions(path, LoadOptions{}) }

// LoadWithOptions is Load with options.
func LoadWithOptions(path string, opts LoadOptions) (*Registry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("credentials config: %w: check --credentials", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("credentials config %s: %w", path, err)
	}
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("credentials config %s: larger than %d bytes", path, MaxConfigBytes)
	}
	cfg, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	return Build(cfg, filepath.Dir(path), opts)
}

// located is a YAML position finder for one file.
type located struct {
	file string
	ast  *ast.File
}

// at formats "file:line: msg" for the YAML path (like "$.sources[1].ttl"),
// falling back to the nearest ancestor that exists.
func (l located) at(path, format string, args ...any) error {
	line := 0
	for p := path; p != "" && line == 0; {
		if yp, err := yaml.PathString(p); err == nil && l.ast != nil {
			if n, err := yp.FilterFile(l.ast); err == nil && n != nil && n.GetToken() != nil && n.GetToken().Position != nil {
				line = n.GetToken().Position.Line
				break
			}
		}
		i := max(strings.LastIndexByte(p, '.'), strings.LastIndexByte(p, '['))
		if i <= 1 {
			break
		}
		p = p[:i]
	}
	if line == 0 {
		line = 1
	}
	return fmt.Errorf("%s:%d: %s", l.file, line, fmt.Sprintf(format, args...))
}

// Parse decodes and checks a credentials configuration strictly: unknown
// keys, duplicate keys, wrong types, keys that do not apply to a source's
// type and missing required fields are errors with file:line. It does not
// read secret files or the environment (Build does).
func Parse(data []byte, file string) (*Config, error) {
	var cfg Config
	if err := yaml.UnmarshalWithOptions(data, &cfg, yaml.Strict(), yaml.DisallowUnknownField()); err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil && ye.GetToken().Position != nil {
			return nil, fmt.Errorf("%s:%d:%d: %s", file, ye.GetToken().Position.Line, ye.GetToken().Position.Column, ye.GetMessage())
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(f.Docs) != 1 {
		return nil, fmt.Errorf("%s: the file holds %d YAML documents: want exactly one", file, len(f.Docs))
	}
	l := located{file: file, ast: f}
	if cfg.APIVersion != APIVersion {
		return nil, l.at("$.apiVersion", "apiVersion is %q: want %s", cfg.APIVersion, APIVersion)
	}
	if cfg.Kind != KindCredentials {
		return nil, l.at("$.kind", "kind is %q: want %s", cfg.Kind, KindCredentials)
	}
	if len(cfg.Sources) > maxSources {
		return nil, l.at("$.sources", "%d sources: at most %d", len(cfg.Sources), maxSources)
	}
	keys := sourceKeys(f)
	seen := map[string]int{}
	var errs []error
	for i, s := range cfg.Sources {
		p := fmt.Sprintf("$.sources[%d]", i)
		bad := func(field, format string, args ...any) {
			errs = append(errs, l.at(p+"."+field, "sources[%d] (%s): %s", i, s.Name, fmt.Sprintf(format, args...)))
		}
		switch {
		case !sourceNameRe.MatchString(s.Name):
			bad("name", "name %q must be 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", s.Name)
		case seenAt(seen, s.Name, i) >= 0:
			bad("name", "name %q is already used by sources[%d]", s.Name, seen[s.Name])
		}
		allowed, ok := keysByType[s.Type]
		if !ok {
			bad("type", "type %q is not one of static, jwt, oauth2, spiffe-jwt", s.Type)
			continue
		}
		if i < len(keys) {
			for _, k := range keys[i] {
				if k != "name" && k != "type" && !slices.Contains(allowed, k) {
					bad(k, "%s does not apply to a %s source (it takes %s)", k, s.Type, strings.Join(allowed, ", "))
				}
			}
		}
		switch s.Type {
		case TypeStatic:
			if (s.File == "") == (s.Env == "") {
				bad("type", "a static source takes exactly one of file and env")
			}
		case TypeJWT:
			if s.Issuer == "" {
				bad("issuer", "issuer is required")
			}
			if s.Audience == "" {
				bad("audience", "audience is required")
			}
			if d := time.Duration(s.TTL); d < 0 || d > MaxJWTTTL {
				bad("ttl", "ttl %s is not between 0 and %s", d, MaxJWTTTL)
			}
			if s.MaxActive < 0 {
				bad("maxActive", "maxActive must not be negative")
			}
		case TypeOAuth2:
			for _, u := range []struct{ key, v string }{{"tokenURL", s.TokenURL}, {"revokeURL", s.RevokeURL}} {
				if err := checkEndpoint(u.v); err != nil {
					bad(u.key, "%s %v", u.key, err)
				}
			}
			if s.ClientID == "" {
				bad("clientID", "clientID is required")
			}
			if (s.ClientSecretFile == "") == (s.ClientSecretEnv == "") {
				bad("type", "an oauth2 source takes exactly one of clientSecretFile and clientSecretEnv")
			}
			if len(s.Scopes) == 0 {
				bad("scopes", "scopes is required: list the scopes this source may grant")
			}
			if s.Timeout < 0 {
				bad("timeout", "timeout must not be negative")
			}
		case TypeSPIFFEJWT:
			if s.Audience == "" {
				bad("audience", "audience is required")
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &cfg, nil
}

func seenAt(seen map[string]int, name string, i int) int {
	if j, ok := seen[name]; ok {
		return j
	}
	seen[name] = i
	return -1
}

// sourceKeys returns the keys written in each item of sources, in order.
func sourceKeys(f *ast.File) [][]string {
	body, ok := f.Docs[0].Body.(*ast.MappingNode)
	if !ok {
		return nil
	}
	var seq *ast.SequenceNode
	for _, kv := range body.Values {
		if kv.Key.String() == "sources" {
			seq, _ = kv.Value.(*ast.SequenceNode)
		}
	}
	if seq == nil {
		return nil
	}
	out := make([][]string, len(seq.Values))
	for i, item := range seq.Values {
		m, ok := item.(*ast.MappingNode)
		if !ok {
			continue
		}
		for _, kv := range m.Values {
			out[i] = append(out[i], kv.Key.String())
		}
	}
	return out
}

// Build makes the sources of cfg. dir resolves relative file paths.
func Build(cfg *Config, dir string, opts LoadOptions) (*Registry, error) {
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	var sources []Source
	for _, s := range cfg.Sources {
		var src Source
		var err error
		switch s.Type {
		case TypeStatic:
			src, err = NewStatic(s.Name, abs(s.File), s.Env)
		case TypeJWT:
			src, err = NewJWT(s.Name, JWTOptions{Issuer: s.Issuer, Audience: s.Audience, TTL: time.Duration(s.TTL),
				KeyFile: abs(s.KeyFile), MaxActive: s.MaxActive, Logger: opts.Logger})
		case TypeOAuth2:
			var secret string
			if s.ClientSecretFile != "" {
				secret, err = readSecretFile(s.Name, abs(s.ClientSecretFile))
			} else if v, ok := lookup(s.ClientSecretEnv); ok && v != "" {
				secret = v
			} else {
				err = fmt.Errorf("oauth2 credential source %q: environment variable %s of the executor is not set", s.Name, s.ClientSecretEnv)
			}
			if err == nil {
				src, err = NewOAuth2(s.Name, OAuth2Options{TokenURL: s.TokenURL, RevokeURL: s.RevokeURL, ClientID: s.ClientID,
					ClientSecret: secret, Scopes: s.Scopes, Audience: s.Audience, Timeout: time.Duration(s.Timeout),
					Client: opts.HTTPClient, Logger: opts.Logger})
			}
		case TypeSPIFFEJWT:
			src, err = NewSPIFFEJWT(s.Name, SPIFFEJWTOptions{Audience: s.Audience, Subject: s.Subject, Socket: s.Socket,
				Fetcher: opts.Fetcher, Logger: opts.Logger})
		default:
			err = fmt.Errorf("credential source %q: type %q is not one of static, jwt, oauth2, spiffe-jwt", s.Name, s.Type)
		}
		if err != nil {
			return nil, err
		}
		sources = append(sources, src)
	}
	return NewRegistry(sources...)
}

// Registry holds the configured sources by name.
type Registry struct {
	byName map[string]Source
	names  []string
}

// NewRegistry returns a registry of sources, which must have distinct
// names.
func NewRegistry(sources ...Source) (*Registry, error) {
	r := &Registry{byName: map[string]Source{}}
	for _, s := range sources {
		if _, dup := r.byName[s.Name()]; dup {
			return nil, fmt.Errorf("credential source %q is defined twice", s.Name())
		}
		r.byName[s.Name()] = s
		r.names = append(r.names, s.Name())
	}
	return r, nil
}

// Source returns the source named name, or an error naming the configured
// sources.
func (r *Registry) Source(name string) (Source, error) {
	if s, ok := r.byName[name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("credential source %q is not configured (configured: %s): add it to the executor's credentials file or fix the tool's manifest",
		name, strings.Join(r.names, ", "))
}

// Names returns the source names in configuration order.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// Handler serves, for every jwt source NAME, its JWKS at
// /credentials/NAME/.well-known/jwks.json and its introspection endpoint at
// /credentials/NAME/introspect. Other paths are 404.
func (r *Registry) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, n := range r.names {
		if j, ok := r.byName[n].(*JWT); ok {
			prefix := "/credentials/" + n
			mux.Handle(prefix+"/", http.StripPrefix(prefix, j.Handler()))
		}
	}
	return mux
}

// Close releases what the sources hold (Workload API connections).
func (r *Registry) Close() error {
	var errs []error
	for _, n := range r.names {
		if c, ok := r.byName[n].(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
