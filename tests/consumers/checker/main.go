// Command consumers-checker reads back the consumer objects the jwt-trust operator wrote, as their
// upstream projects' own Go types decode them, and verifies tokens against the keys they hold.
//
// Input: one JSON request per line on stdin, {"object": <object as the API server returns it>,
// "token": "<compact JWS, optional>", "issuer": "<iss, for a ConfigMap>", "audience": "<aud, for a
// ConfigMap>", "now": <unix seconds, optional>}. Output: one JSON line per request, {"ok": bool,
// "error": "...", "kids": {"<issuer>": ["<kid>", ...]}, "verified": bool}, flushed at once, so a test
// can keep one checker running and ask it again and again.
//
//   - RequestAuthentication (security.istio.io/v1): the whole object is decoded into istio.io/client-go's
//     type with unknown fields refused, its spec again with protojson (DiscardUnknown false) into
//     istio.io/api's message; then the rules the upstream CRD declares (from the kubebuilder markers of
//     request_authentication.proto and selector.proto) are checked, and every inline jwks is parsed
//     by go-jose as istiod would. A token is verified with the rule of its issuer: signature by the key
//     of its kid, iss, exp/nbf, and one of the rule's audiences.
//   - ConfigMap (v1): decoded into k8s.io/api's type with unknown fields refused, its name and keys
//     checked with apimachinery's validation; the key "jwks" (what an Envoy Gateway SecurityPolicy's
//     localJWKS reads) is parsed by go-jose, and a token is verified against it for the given issuer
//     and audience.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/protobuf/encoding/protojson"
	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

type request struct {
	Object   json.RawMessage `json:"object"`
	Token    string          `json:"token"`
	Issuer   string          `json:"issuer"`
	Audience string          `json:"audience"`
	Now      int64           `json:"now"`
}

type response struct {
	OK       bool                `json:"ok"`
	Error    string              `json:"error,omitempty"`
	Kids     map[string][]string `json:"kids,omitempty"`
	Verified bool                `json:"verified"`
}

// provider is what a consumer verifies a token with: an issuer, its audiences and its keys.
type provider struct {
	issuer    string
	audiences []string
	keys      jose.JSONWebKeySet
}

func strict(raw []byte, into any) error {
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(into); err != nil {
		return err
	}
	if decoder.More() {
		return errors.New("trailing data after the object")
	}
	return nil
}

// parseJWKS parses a JWK Set as go-jose does and refuses what no verifier should load: private or
// invalid keys, keys without kid or alg.
func parseJWKS(text string) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := strict([]byte(text), &set); err != nil {
		return set, fmt.Errorf("jwks: %w", err)
	}
	for _, key := range set.Keys {
		switch {
		case !key.IsPublic():
			return set, fmt.Errorf("jwks: key %s is not a public key", key.KeyID)
		case !key.Valid():
			return set, fmt.Errorf("jwks: key %s is not valid", key.KeyID)
		case key.KeyID == "" || key.Algorithm == "":
			return set, errors.New("jwks: a key without kid or alg")
		case key.Use != "sig":
			return set, fmt.Errorf("jwks: key %s has use %q", key.KeyID, key.Use)
		}
	}
	return set, nil
}

func kids(set jose.JSONWebKeySet) []string {
	out := []string{}
	for _, key := range set.Keys {
		out = append(out, key.KeyID)
	}
	sort.Strings(out)
	return out
}

func requestAuthentication(raw []byte) ([]provider, error) {
	var object securityv1.RequestAuthentication
	if err := strict(raw, &object); err != nil {
		return nil, fmt.Errorf("RequestAuthentication: %w", err)
	}
	if object.APIVersion != "security.istio.io/v1" || object.Kind != "RequestAuthentication" {
		return nil, fmt.Errorf("unexpected %s %s", object.APIVersion, object.Kind)
	}
	// The spec again, strictly: client-go's decoder for it ignores unknown fields.
	var document map[string]json.RawMessage
	if err := json.Unmarshal(raw, &document); err != nil {
		return nil, err
	}
	var spec securityv1beta1.RequestAuthentication
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(document["spec"], &spec); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	// The upstream CRD's rules (kubebuilder markers of the proto files).
	if spec.GetSelector() != nil && (spec.GetTargetRef() != nil || len(spec.GetTargetRefs()) > 0) {
		return nil, errors.New("spec: only one of targetRefs or selector can be set")
	}
	for key, value := range spec.GetSelector().GetMatchLabels() {
		if key == "" || strings.Contains(key, "*") || strings.Contains(value, "*") {
			return nil, fmt.Errorf("spec.selector: invalid label %q=%q", key, value)
		}
	}
	if len(spec.GetJwtRules()) > 4096 {
		return nil, errors.New("spec.jwtRules: more than 4096")
	}
	providers := []provider{}
	for i, rule := range spec.GetJwtRules() {
		if rule.GetIssuer() == "" {
			return nil, fmt.Errorf("spec.jwtRules[%d].issuer is empty", i)
		}
		if rule.GetJwks() != "" && rule.GetJwksUri() != "" {
			return nil, fmt.Errorf("spec.jwtRules[%d]: only one of jwks or jwksUri can be set", i)
		}
		if rule.GetJwks() == "" {
			return nil, fmt.Errorf("spec.jwtRules[%d]: no inline jwks", i)
		}
		if header := rule.GetOutputPayloadToHeader(); header != "" && len(validation.IsHTTPHeaderName(header)) > 0 {
			return nil, fmt.Errorf("spec.jwtRules[%d].outputPayloadToHeader %q", i, header)
		}
		set, err := parseJWKS(rule.GetJwks())
		if err != nil {
			return nil, fmt.Errorf("spec.jwtRules[%d].%w", i, err)
		}
		providers = append(providers, provider{rule.GetIssuer(), rule.GetAudiences(), set})
	}
	return providers, nil
}

func configMap(raw []byte, issuer, audience string) ([]provider, error) {
	var object corev1.ConfigMap
	if err := strict(raw, &object); err != nil {
		return nil, fmt.Errorf("ConfigMap: %w", err)
	}
	if object.APIVersion != "v1" || object.Kind != "ConfigMap" {
		return nil, fmt.Errorf("unexpected %s %s", object.APIVersion, object.Kind)
	}
	if problems := validation.IsDNS1123Subdomain(object.Name); len(problems) > 0 {
		return nil, fmt.Errorf("ConfigMap name %q: %s", object.Name, strings.Join(problems, "; "))
	}
	for key := range object.Data {
		if problems := validation.IsConfigMapKey(key); len(problems) > 0 {
			return nil, fmt.Errorf("ConfigMap key %q: %s", key, strings.Join(problems, "; "))
		}
	}
	if len(object.BinaryData) > 0 {
		return nil, errors.New("ConfigMap: unexpected binaryData")
	}
	text, found := object.Data["jwks"]
	if !found {
		return nil, errors.New(`ConfigMap: no key "jwks"`)
	}
	if len(object.Data) != 1 {
		return nil, errors.New(`ConfigMap: keys besides "jwks" (a gateway may read another one)`)
	}
	set, err := parseJWKS(text)
	if err != nil {
		return nil, err
	}
	return []provider{{issuer, []string{audience}, set}}, nil
}

func verify(providers []provider, token string, now time.Time) error {
	algorithms := []jose.SignatureAlgorithm{}
	for _, p := range providers {
		for _, key := range p.keys.Keys {
			algorithms = append(algorithms, jose.SignatureAlgorithm(key.Algorithm))
		}
	}
	if len(algorithms) == 0 {
		return errors.New("no keys")
	}
	parsed, err := jwt.ParseSigned(token, algorithms)
	if err != nil {
		return err
	}
	var unverified jwt.Claims
	if err := parsed.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return err
	}
	for _, p := range providers {
		if p.issuer != unverified.Issuer {
			continue
		}
		keys := p.keys.Key(parsed.Headers[0].KeyID)
		if len(keys) == 0 {
			return fmt.Errorf("no key %s for issuer %s", parsed.Headers[0].KeyID, p.issuer)
		}
		var claims jwt.Claims
		if err := parsed.Claims(keys[0].Key, &claims); err != nil {
			return err
		}
		return claims.ValidateWithLeeway(jwt.Expected{Issuer: p.issuer, AnyAudience: p.audiences, Time: now}, 0)
	}
	return fmt.Errorf("no rule for issuer %q", unverified.Issuer)
}

func handle(line []byte) response {
	var req request
	if err := strict(line, &req); err != nil {
		return response{Error: "request: " + err.Error()}
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(req.Object, &head); err != nil {
		return response{Error: "object: " + err.Error()}
	}
	var providers []provider
	var err error
	switch head.Kind {
	case "RequestAuthentication":
		providers, err = requestAuthentication(req.Object)
	case "ConfigMap":
		providers, err = configMap(req.Object, req.Issuer, req.Audience)
	default:
		err = fmt.Errorf("unknown kind %q", head.Kind)
	}
	if err != nil {
		return response{Error: err.Error()}
	}
	out := response{OK: true, Kids: map[string][]string{}}
	for _, p := range providers {
		out.Kids[p.issuer] = kids(p.keys)
	}
	if req.Token != "" {
		now := time.Now()
		if req.Now != 0 {
			now = time.Unix(req.Now, 0)
		}
		if err := verify(providers, req.Token, now); err != nil {
			out.OK, out.Error = false, "token: "+err.Error()
		} else {
			out.Verified = true
		}
	}
	return out
}

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 0, 1<<20), 16<<20)
	writer := bufio.NewWriter(os.Stdout)
	encoder := json.NewEncoder(writer)
	for scanner.Scan() {
		if len(bytes.TrimSpace(scanner.Bytes())) == 0 {
			continue
		}
		if err := encoder.Encode(handle(scanner.Bytes())); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := writer.Flush(); err != nil {
			os.Exit(2)
		}
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
