// Command interop is the Go side of jwt-trust's interop tests: a batch verifier and signer.
//
// It reads one JSON job file (path in os.Args[1]) and prints one JSON document on stdout, so the
// Python tests start it once per run instead of once per token. Each verify case is checked by three
// libraries, each used the way an application using it would: go-jose v4 (JSONWebKeySet), golang-jwt
// v5 (with a key function written here, since the library has no JWKS support of its own) and jwx v3
// (jwk.Set). Each sign request is signed by the same three libraries with a PKCS#8 PEM key that the
// tests generated with jwt_trust and wrote to a temporary file.
//
// A library error is data, not a failure of this program: it is reported in the output and the
// Python side decides what was expected. The program exits non-zero only when its input is unusable.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	gjwt "github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	xjwt "github.com/lestrrat-go/jwx/v3/jwt"
)

// The same leeway as jwt-trust's default, so that every verifier applies the same rule.
const leeway = 60 * time.Second

type verifyCase struct {
	ID       string `json:"id"`
	Token    string `json:"token"`
	JWKS     string `json:"jwks"`
	Alg      string `json:"alg"`
	Audience string `json:"audience"`
	Issuer   string `json:"issuer"`
	Now      int64  `json:"now"`
}

type signRequest struct {
	ID       string `json:"id"`
	Alg      string `json:"alg"`
	Kid      string `json:"kid"`
	Typ      string `json:"typ"`
	KeyPath  string `json:"key"`
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	JwtID    string `json:"jti"`
}

type job struct {
	Verify []verifyCase  `json:"verify"`
	Sign   []signRequest `json:"sign"`
}

type verifyResult struct {
	OK      bool   `json:"ok"`
	Subject string `json:"sub,omitempty"`
	Error   string `json:"error,omitempty"`
}

type signResult struct {
	Token string `json:"token,omitempty"`
	Error string `json:"error,omitempty"`
}

type output struct {
	Verify map[string]map[string]verifyResult `json:"verify"`
	Sign   map[string]map[string]signResult   `json:"sign"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: interop JOB.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var j job
	if err := json.Unmarshal(raw, &j); err != nil {
		fmt.Fprintln(os.Stderr, "bad job file:", err)
		os.Exit(2)
	}
	out := output{Verify: map[string]map[string]verifyResult{}, Sign: map[string]map[string]signResult{}}
	files := map[string][]byte{}
	for _, c := range j.Verify {
		jwksBytes, ok := files[c.JWKS]
		if !ok {
			if jwksBytes, err = os.ReadFile(c.JWKS); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			files[c.JWKS] = jwksBytes
		}
		out.Verify[c.ID] = map[string]verifyResult{
			"go-jose":    result(verifyGoJose(c, jwksBytes)),
			"golang-jwt": result(verifyGolangJWT(c, jwksBytes)),
			"jwx":        result(verifyJWX(c, jwksBytes)),
		}
	}
	for _, r := range j.Sign {
		key, err := readPrivateKey(r.KeyPath)
		if err != nil {
			// Deliberately not the parser's message: it could quote the file.
			fmt.Fprintln(os.Stderr, "cannot read the private key of sign request", r.ID)
			os.Exit(2)
		}
		out.Sign[r.ID] = map[string]signResult{
			"go-jose":    tokenResult(signGoJose(r, key)),
			"golang-jwt": tokenResult(signGolangJWT(r, key)),
			"jwx":        tokenResult(signJWX(r, key)),
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func result(subject string, err error) verifyResult {
	if err != nil {
		return verifyResult{OK: false, Error: err.Error()}
	}
	return verifyResult{OK: true, Subject: subject}
}

func tokenResult(token string, err error) signResult {
	if err != nil {
		return signResult{Error: err.Error()}
	}
	return signResult{Token: token}
}

// --- go-jose v4 -------------------------------------------------------------------------------

func verifyGoJose(c verifyCase, jwksBytes []byte) (string, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwksBytes, &set); err != nil {
		return "", err
	}
	tok, err := josejwt.ParseSigned(c.Token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(c.Alg)})
	if err != nil {
		return "", err
	}
	// Passing the whole set makes go-jose pick the key by the token's kid.
	var claims josejwt.Claims
	if err := tok.Claims(set, &claims); err != nil {
		return "", err
	}
	if claims.Expiry == nil {
		return "", errors.New("no exp claim")
	}
	expected := josejwt.Expected{
		Issuer:      c.Issuer,
		AnyAudience: josejwt.Audience{c.Audience},
		Time:        time.Unix(c.Now, 0),
	}
	if err := claims.ValidateWithLeeway(expected, leeway); err != nil {
		return "", err
	}
	return claims.Subject, nil
}

func signGoJose(r signRequest, key crypto.Signer) (string, error) {
	options := (&jose.SignerOptions{}).WithType(jose.ContentType(r.Typ)).WithHeader("kid", r.Kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(r.Alg), Key: key}, options)
	if err != nil {
		return "", err
	}
	claims := josejwt.Claims{
		Issuer:    r.Issuer,
		Subject:   r.Subject,
		Audience:  josejwt.Audience{r.Audience},
		IssuedAt:  josejwt.NewNumericDate(time.Unix(r.IssuedAt, 0)),
		NotBefore: josejwt.NewNumericDate(time.Unix(r.IssuedAt, 0)),
		Expiry:    josejwt.NewNumericDate(time.Unix(r.Expiry, 0)),
		ID:        r.JwtID,
	}
	return josejwt.Signed(signer).Claims(claims).Serialize()
}

// --- golang-jwt v5, with a JWKS key function ----------------------------------------------------

type jwkJSON struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// jwksKeyFunc selects the key whose kid is the token's kid, and refuses it unless its alg is the
// token's alg and it is meant for signatures: what an application must do by hand with golang-jwt.
func jwksKeyFunc(jwksBytes []byte) gjwt.Keyfunc {
	return func(t *gjwt.Token) (any, error) {
		var set struct {
			Keys []jwkJSON `json:"keys"`
		}
		if err := json.Unmarshal(jwksBytes, &set); err != nil {
			return nil, err
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("the token has no kid")
		}
		for _, k := range set.Keys {
			if k.Kid != kid {
				continue
			}
			if k.Alg != t.Method.Alg() {
				return nil, fmt.Errorf("key %s is for %s, the token says %s", kid, k.Alg, t.Method.Alg())
			}
			if k.Use != "" && k.Use != "sig" {
				return nil, errors.New("the key is not a signature key")
			}
			return publicKeyFromJWK(k)
		}
		return nil, fmt.Errorf("no key with kid %s in the JWKS", kid)
	}
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func publicKeyFromJWK(k jwkJSON) (crypto.PublicKey, error) {
	switch k.Kty {
	case "OKP":
		x, err := b64(k.X)
		if err != nil || k.Crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad OKP key")
		}
		return ed25519.PublicKey(x), nil
	case "EC":
		curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
		curve, ok := curves[k.Crv]
		if !ok {
			return nil, errors.New("unsupported curve")
		}
		x, errX := b64(k.X)
		y, errY := b64(k.Y)
		if errX != nil || errY != nil {
			return nil, errors.New("bad EC coordinates")
		}
		// The uncompressed point encoding; the parser checks that the point is on the curve.
		point := append(append([]byte{4}, x...), y...)
		return ecdsa.ParseUncompressedPublicKey(curve, point)
	case "RSA":
		n, errN := b64(k.N)
		e, errE := b64(k.E)
		if errN != nil || errE != nil || len(e) > 4 {
			return nil, errors.New("bad RSA key")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	}
	return nil, fmt.Errorf("unsupported kty %q", k.Kty)
}

func verifyGolangJWT(c verifyCase, jwksBytes []byte) (string, error) {
	now := time.Unix(c.Now, 0)
	tok, err := gjwt.ParseWithClaims(c.Token, &gjwt.RegisteredClaims{}, jwksKeyFunc(jwksBytes),
		gjwt.WithValidMethods([]string{c.Alg}),
		gjwt.WithIssuer(c.Issuer),
		gjwt.WithAudience(c.Audience),
		gjwt.WithExpirationRequired(),
		gjwt.WithLeeway(leeway),
		gjwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return "", err
	}
	return tok.Claims.(*gjwt.RegisteredClaims).Subject, nil
}

func signGolangJWT(r signRequest, key crypto.Signer) (string, error) {
	method := gjwt.GetSigningMethod(r.Alg)
	if method == nil {
		return "", fmt.Errorf("golang-jwt has no %s", r.Alg)
	}
	claims := gjwt.RegisteredClaims{
		Issuer:    r.Issuer,
		Subject:   r.Subject,
		Audience:  gjwt.ClaimStrings{r.Audience},
		IssuedAt:  gjwt.NewNumericDate(time.Unix(r.IssuedAt, 0)),
		NotBefore: gjwt.NewNumericDate(time.Unix(r.IssuedAt, 0)),
		ExpiresAt: gjwt.NewNumericDate(time.Unix(r.Expiry, 0)),
		ID:        r.JwtID,
	}
	t := gjwt.NewWithClaims(method, claims)
	t.Header["kid"] = r.Kid
	t.Header["typ"] = r.Typ
	return t.SignedString(key)
}

// --- jwx v3 -----------------------------------------------------------------------------------

func verifyJWX(c verifyCase, jwksBytes []byte) (string, error) {
	set, err := jwk.Parse(jwksBytes)
	if err != nil {
		return "", err
	}
	now := time.Unix(c.Now, 0)
	// WithKeySet selects the key by kid and uses the key's own alg, never the token's.
	tok, err := xjwt.Parse([]byte(c.Token),
		xjwt.WithKeySet(set),
		xjwt.WithValidate(true),
		xjwt.WithIssuer(c.Issuer),
		xjwt.WithAudience(c.Audience),
		xjwt.WithRequiredClaim(xjwt.ExpirationKey),
		xjwt.WithAcceptableSkew(leeway),
		xjwt.WithClock(xjwt.ClockFunc(func() time.Time { return now })),
	)
	if err != nil {
		return "", err
	}
	subject, _ := tok.Subject()
	return subject, nil
}

func signJWX(r signRequest, key crypto.Signer) (string, error) {
	alg, ok := jwa.LookupSignatureAlgorithm(r.Alg)
	if !ok {
		return "", fmt.Errorf("jwx has no %s", r.Alg)
	}
	tok, err := xjwt.NewBuilder().
		Issuer(r.Issuer).
		Subject(r.Subject).
		Audience([]string{r.Audience}).
		IssuedAt(time.Unix(r.IssuedAt, 0)).
		NotBefore(time.Unix(r.IssuedAt, 0)).
		Expiration(time.Unix(r.Expiry, 0)).
		JwtID(r.JwtID).
		Build()
	if err != nil {
		return "", err
	}
	headers := jws.NewHeaders()
	if err := headers.Set(jws.KeyIDKey, r.Kid); err != nil {
		return "", err
	}
	if err := headers.Set(jws.TypeKey, r.Typ); err != nil {
		return "", err
	}
	signed, err := xjwt.Sign(tok, xjwt.WithKey(alg, key, jws.WithProtectedHeaders(headers)))
	if err != nil {
		return "", err
	}
	return string(signed), nil
}

// --- keys -------------------------------------------------------------------------------------

func readPrivateKey(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PKCS#8 PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS#8 private key")
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("not a signing key")
	}
	return signer, nil
}
