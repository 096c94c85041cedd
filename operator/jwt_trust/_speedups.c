/* Optional C twins of the verifier's per-token hot path (jwt_trust/_hotpath.py is the reference).
 *
 * Why C: on a fresh token the verifier's own work, outside the signature check, is splitting the
 * token, two strict base64url decodings, one strict JSON parse, the ECDSA signature's DER encoding and
 * the time and audience rules. In Python that is a few hundred bytecodes whose cost grows several-fold
 * when they run between OpenSSL calls (the caches are cold); here it is one call each. Behaviour is
 * identical to the Python reference, error messages included, and a differential test checks that on
 * generated and mutated inputs (tests/unit/test_hotpath.py).
 *
 *   check_compact(token: bytes, headers: dict, check_header, context, parse_claims: bool) -> tuple
 *   split_token(token: bytes) -> (header_b64, payload, signature, signing_input)
 *   parse_object(raw: bytes, part: str) -> dict
 *   ecdsa_der(signature: bytes, order: bytes) -> bytes | None
 *   check_signature(verify, extra: tuple, size: int, order: bytes | None, signature: bytes, data) -> bool
 *   check_claims(claims: dict, now: float, leeway: float, audiences: tuple, required: tuple) -> None
 *
 * They raise the same jwt_trust.errors classes as their Python twins. Nothing here allocates more than
 * the input's size, and parsing is bounded by MAX_DEPTH: no input makes it recurse deeply or run long.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define MAX_DEPTH 32 /* jwt_trust._hotpath.MAX_JSON_DEPTH */

/* jwt_trust.errors' classes, looked up at import. */
static PyObject *MalformedToken, *MalformedClaim, *MissingClaim, *ExpiredToken, *NotYetValid, *IssuedInFuture,
    *InvalidAudience;

/* --- strict base64url (RFC 4648 §5, no padding, canonical) ------------------------------------ */

/* Sextet of each base64url character, 0xFF for anything else (padding, '+', '/', whitespace). */
static unsigned char SEXTET[256];

static void init_sextets(void) {
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    memset(SEXTET, 0xFF, sizeof(SEXTET));
    for (int i = 0; i < 64; i++) SEXTET[(unsigned char)alphabet[i]] = (unsigned char)i;
}

/* Decode [in, in + len) into a new bytes object, or return NULL with MalformedToken set. */
static PyObject *b64url_decode(const unsigned char *in, Py_ssize_t len, const char *part) {
    Py_ssize_t remainder = len & 3;
    Py_ssize_t full = len - remainder;
    /* A 1-character final group is impossible (RFC 4648 §3.5 on spare bits is checked below). */
    if (remainder == 1) goto invalid;
    PyObject *result = PyBytes_FromStringAndSize(NULL, full / 4 * 3 + (remainder ? remainder - 1 : 0));
    if (result == NULL) return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    Py_ssize_t i = 0;
    for (; i < full; i += 4) {
        unsigned a = SEXTET[in[i]], b = SEXTET[in[i + 1]], c = SEXTET[in[i + 2]], d = SEXTET[in[i + 3]];
        if ((a | b | c | d) & 0x80) goto invalid_result;
        unsigned group = a << 18 | b << 12 | c << 6 | d;
        *out++ = (unsigned char)(group >> 16);
        *out++ = (unsigned char)(group >> 8);
        *out++ = (unsigned char)group;
    }
    if (remainder == 2) {
        unsigned a = SEXTET[in[i]], b = SEXTET[in[i + 1]];
        /* The 4 spare low bits of the last character must be zero, or two strings decode alike. */
        if ((a | b) & 0x80 || b & 0x0F) goto invalid_result;
        *out = (unsigned char)(a << 2 | b >> 4);
    } else if (remainder == 3) {
        unsigned a = SEXTET[in[i]], b = SEXTET[in[i + 1]], c = SEXTET[in[i + 2]];
        if ((a | b | c) & 0x80 || c & 0x03) goto invalid_result;
        unsigned group = a << 10 | b << 4 | c >> 2;
        *out++ = (unsigned char)(group >> 8);
        *out = (unsigned char)group;
    }
    return result;

invalid_result:
    Py_DECREF(result);
invalid:
    PyErr_Format(MalformedToken, "the %s is not strict base64url", part);
    return NULL;
}

/* --- split_token ------------------------------------------------------------------------------ */

static PyObject *split_token(PyObject *Py_UNUSED(module), PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "split_token() needs bytes");
        return NULL;
    }
    const unsigned char *token = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t len = PyBytes_GET_SIZE(arg);
    if (len > 0 && token[0] == '{') {
        PyErr_SetString(MalformedToken, "JSON serialization is not accepted, only compact JWS");
        return NULL;
    }
    Py_ssize_t dots[2] = {-1, -1};
    Py_ssize_t count = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (token[i] == '.') {
            if (count < 2) dots[count] = i;
            count++;
        }
    }
    if (count != 2) {
        PyErr_SetString(MalformedToken, count == 4 ? "the token is a JWE, not a JWS"
                                                   : "a compact JWS has exactly three segments");
        return NULL;
    }
    PyObject *header = NULL, *payload = NULL, *signature = NULL, *signing_input = NULL;
    payload = b64url_decode(token + dots[0] + 1, dots[1] - dots[0] - 1, "payload");
    if (payload == NULL) goto fail;
    signature = b64url_decode(token + dots[1] + 1, len - dots[1] - 1, "signature");
    if (signature == NULL) goto fail;
    header = PyBytes_FromStringAndSize((const char *)token, dots[0]);
    if (header == NULL) goto fail;
    signing_input = PyBytes_FromStringAndSize((const char *)token, dots[1]);
    if (signing_input == NULL) goto fail;
    PyObject *parts = PyTuple_Pack(4, header, payload, signature, signing_input);
    Py_DECREF(header);
    Py_DECREF(payload);
    Py_DECREF(signature);
    Py_DECREF(signing_input);
    return parts;
fail:
    Py_XDECREF(header);
    Py_XDECREF(payload);
    Py_XDECREF(signature);
    Py_XDECREF(signing_input);
    return NULL;
}

/* --- parse_object: strict JSON, as json.JSONDecoder(strict=True) with duplicate names and the
 * constants NaN/Infinity refused --------------------------------------------------------------- */

typedef struct {
    const unsigned char *p, *end;
    int depth;
} Parser;

/* A failed parse returns NULL with no exception set (a syntax error) or with one set by CPython: a
 * ValueError (an integer with too many digits) is a syntax error too, anything else (MemoryError)
 * propagates. */

static void skip_whitespace(Parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int hex4(const unsigned char *s, Py_UCS4 *out) {
    Py_UCS4 value = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        value <<= 4;
        if (c >= '0' && c <= '9') value |= (Py_UCS4)(c - '0');
        else if (c >= 'a' && c <= 'f') value |= (Py_UCS4)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') value |= (Py_UCS4)(c - 'A' + 10);
        else return 0;
    }
    *out = value;
    return 1;
}

/* Interned strings for the member names nearly every header and claim set has: no allocation, and
 * their hash is already computed when they become dict keys. */
static PyObject *KNOWN_NAMES[10];
static const char *const KNOWN_NAME_TEXTS[10] = {"alg", "kid", "typ", "iss", "sub", "aud", "exp", "nbf", "iat", "jti"};

static PyObject *known_name(const unsigned char *text, Py_ssize_t size) {
    if (size != 3) return NULL;
    for (size_t i = 0; i < sizeof(KNOWN_NAMES) / sizeof(KNOWN_NAMES[0]); i++) {
        if (memcmp(text, KNOWN_NAME_TEXTS[i], 3) == 0) return KNOWN_NAMES[i];
    }
    return NULL;
}

/* The string starting at ps->p (a '"'). The document is known to be valid UTF-8. */
static PyObject *parse_string(Parser *ps) {
    const unsigned char *start = ++ps->p, *end = ps->end, *p = start;
    int escaped = 0, ascii = 1;
    while (p < end && *p != '"') {
        if (*p == '\\') {
            if (end - p < 2) return NULL; /* unterminated; and p never points past the end */
            escaped = 1;
            p += 2;
        } else if (*p < 0x20) {
            return NULL; /* a raw control character (strict JSON) */
        } else {
            ascii &= *p < 0x80;
            p++;
        }
    }
    if (p >= end) return NULL; /* unterminated */
    ps->p = p + 1;
    if (!escaped) {
        if (!ascii) return PyUnicode_DecodeUTF8((const char *)start, p - start, "strict");
        PyObject *name = known_name(start, p - start);
        if (name != NULL) return Py_NewRef(name);
        PyObject *text = PyUnicode_New(p - start, 127); /* the common case: a plain ASCII string */
        if (text != NULL) memcpy(PyUnicode_1BYTE_DATA(text), start, (size_t)(p - start));
        return text;
    }

    /* Escapes: decode to code points. At most one code point per input byte. */
    Py_UCS4 *buffer = PyMem_Malloc((size_t)(p - start) * sizeof(Py_UCS4));
    if (buffer == NULL) return PyErr_NoMemory();
    Py_ssize_t count = 0;
    const unsigned char *q = start;
    while (q < p) {
        unsigned char c = *q;
        Py_UCS4 cp;
        if (c == '\\') {
            switch (q[1]) { /* q + 1 < p: the scan above stepped over the escaped character */
                case '"': cp = '"'; break;
                case '\\': cp = '\\'; break;
                case '/': cp = '/'; break;
                case 'b': cp = '\b'; break;
                case 'f': cp = '\f'; break;
                case 'n': cp = '\n'; break;
                case 'r': cp = '\r'; break;
                case 't': cp = '\t'; break;
                case 'u':
                    if (p - q < 6 || !hex4(q + 2, &cp)) goto invalid;
                    q += 6;
                    /* A high surrogate followed by an escaped low one is one code point; any other
                     * surrogate stays as it is (as Python's json does). */
                    if (cp >= 0xD800 && cp <= 0xDBFF && p - q >= 6 && q[0] == '\\' && q[1] == 'u') {
                        Py_UCS4 low;
                        if (hex4(q + 2, &low) && low >= 0xDC00 && low <= 0xDFFF) {
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                            q += 6;
                        }
                    }
                    buffer[count++] = cp;
                    continue;
                default: goto invalid;
            }
            q += 2;
        } else if (c < 0x80) {
            cp = c;
            q++;
        } else if (c < 0xE0) {
            cp = (Py_UCS4)(c & 0x1F) << 6 | (q[1] & 0x3F);
            q += 2;
        } else if (c < 0xF0) {
            cp = (Py_UCS4)(c & 0x0F) << 12 | (Py_UCS4)(q[1] & 0x3F) << 6 | (q[2] & 0x3F);
            q += 3;
        } else {
            cp = (Py_UCS4)(c & 0x07) << 18 | (Py_UCS4)(q[1] & 0x3F) << 12 | (Py_UCS4)(q[2] & 0x3F) << 6 |
                 (q[3] & 0x3F);
            q += 4;
        }
        buffer[count++] = cp;
    }
    PyObject *result = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buffer, count);
    PyMem_Free(buffer);
    return result;
invalid:
    PyMem_Free(buffer);
    return NULL;
}

static int is_digit(const Parser *ps, const unsigned char *p) {
    return p < ps->end && *p >= '0' && *p <= '9';
}

/* A number, with exactly the grammar and conversions of json's scanner. */
static PyObject *parse_number(Parser *ps) {
    const unsigned char *start = ps->p, *p = start, *end = ps->end;
    int is_float = 0;
    if (*p == '-') p++;
    if (is_digit(ps, p) && *p != '0') {
        while (is_digit(ps, p)) p++;
    } else if (p < end && *p == '0') {
        p++;
    } else {
        return NULL;
    }
    if (p + 1 < end && *p == '.' && is_digit(ps, p + 1)) {
        is_float = 1;
        p += 2;
        while (is_digit(ps, p)) p++;
    }
    if (p + 1 < end && (*p == 'e' || *p == 'E')) {
        const unsigned char *exponent = p++;
        if (p + 1 < end && (*p == '-' || *p == '+')) p++;
        while (is_digit(ps, p)) p++;
        if (p[-1] >= '0' && p[-1] <= '9') is_float = 1;
        else p = exponent; /* "1e" is the number 1 followed by garbage */
    }
    ps->p = p;

    Py_ssize_t size = p - start;
    if (!is_float && size <= 18) { /* fits a long long whatever the digits: skip the string round trip */
        long long value = 0;
        for (const unsigned char *d = *start == '-' ? start + 1 : start; d < p; d++) value = value * 10 + (*d - '0');
        return PyLong_FromLongLong(*start == '-' ? -value : value);
    }
    char small[64];
    char *text = size < (Py_ssize_t)sizeof(small) ? small : PyMem_Malloc((size_t)size + 1);
    if (text == NULL) return PyErr_NoMemory();
    memcpy(text, start, (size_t)size);
    text[size] = '\0';
    PyObject *result;
    if (is_float) {
        /* Overflow gives an infinity, as float("1e400") does; the verifier refuses it later. */
        double value = PyOS_string_to_double(text, NULL, NULL);
        result = value == -1.0 && PyErr_Occurred() ? NULL : PyFloat_FromDouble(value);
    } else {
        result = PyLong_FromString(text, NULL, 10); /* ValueError past sys.get_int_max_str_digits() */
    }
    if (text != small) PyMem_Free(text);
    return result;
}

static PyObject *parse_value(Parser *ps);

static PyObject *parse_array(Parser *ps) {
    if (++ps->depth > MAX_DEPTH) return NULL;
    ps->p++;
    PyObject *list = PyList_New(0);
    if (list == NULL) return NULL;
    skip_whitespace(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        ps->depth--;
        return list;
    }
    for (;;) {
        PyObject *item = parse_value(ps);
        if (item == NULL) goto fail;
        int appended = PyList_Append(list, item);
        Py_DECREF(item);
        if (appended < 0) goto fail;
        skip_whitespace(ps);
        if (ps->p >= ps->end) goto fail;
        if (*ps->p == ']') break;
        if (*ps->p != ',') goto fail;
        ps->p++;
        skip_whitespace(ps);
    }
    ps->p++;
    ps->depth--;
    return list;
fail:
    Py_DECREF(list);
    return NULL;
}

static PyObject *parse_object_value(Parser *ps) {
    if (++ps->depth > MAX_DEPTH) return NULL;
    ps->p++;
    PyObject *dict = PyDict_New();
    if (dict == NULL) return NULL;
    skip_whitespace(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        ps->depth--;
        return dict;
    }
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"') goto fail;
        PyObject *name = parse_string(ps);
        if (name == NULL) goto fail;
        skip_whitespace(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            Py_DECREF(name);
            goto fail;
        }
        ps->p++;
        skip_whitespace(ps);
        PyObject *value = parse_value(ps);
        if (value == NULL) {
            Py_DECREF(name);
            goto fail;
        }
        /* A repeated member name is refused (RFC 7515 §5.2, RFC 8725 §3.1): never "last one wins". */
        /* A name seen before replaces its value without growing the dict: one lookup tells. */
        Py_ssize_t size = PyDict_GET_SIZE(dict);
        int stored = PyDict_SetItem(dict, name, value);
        Py_DECREF(name);
        Py_DECREF(value);
        if (stored < 0 || PyDict_GET_SIZE(dict) == size) goto fail;
        skip_whitespace(ps);
        if (ps->p >= ps->end) goto fail;
        if (*ps->p == '}') break;
        if (*ps->p != ',') goto fail;
        ps->p++;
        skip_whitespace(ps);
    }
    ps->p++;
    ps->depth--;
    return dict;
fail:
    Py_DECREF(dict);
    return NULL;
}

static PyObject *literal(Parser *ps, const char *word, size_t size, PyObject *value) {
    if ((size_t)(ps->end - ps->p) < size || memcmp(ps->p, word, size) != 0) return NULL;
    ps->p += size;
    return Py_NewRef(value);
}

static PyObject *parse_value(Parser *ps) {
    if (ps->p >= ps->end) return NULL;
    switch (*ps->p) {
        case '{': return parse_object_value(ps);
        case '[': return parse_array(ps);
        case '"': return parse_string(ps);
        case 'n': return literal(ps, "null", 4, Py_None);
        case 't': return literal(ps, "true", 4, Py_True);
        case 'f': return literal(ps, "false", 5, Py_False);
        default:
            if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return parse_number(ps);
            return NULL; /* NaN, Infinity and anything else */
    }
}

/* jwt_trust._hotpath._too_deep: bracket depth outside strings, on the raw bytes. */
static int too_deep(const unsigned char *p, Py_ssize_t len) {
    int depth = 0, in_string = 0, escaped = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (in_string) {
            if (escaped) escaped = 0;
            else if (c == '\\') escaped = 1;
            else if (c == '"') in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH) return 1;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 0;
}

static PyObject *parse_object(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "parse_object() needs (bytes, str)");
        return NULL;
    }
    const unsigned char *raw = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    PyObject *part = args[1];
    if (too_deep(raw, len)) {
        PyErr_Format(MalformedToken, "the %U JSON is nested too deeply", part);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        if (raw[i] & 0x80) { /* not ASCII: the UTF-8 must be valid as a whole, as bytes.decode() wants */
            PyObject *text = PyUnicode_DecodeUTF8((const char *)raw, len, "strict");
            if (text == NULL) goto invalid;
            Py_DECREF(text);
            break;
        }
    }
    Parser ps = {raw, raw + len, 0};
    skip_whitespace(&ps);
    PyObject *value = parse_value(&ps);
    if (value == NULL) goto invalid;
    skip_whitespace(&ps);
    if (ps.p != ps.end) {
        Py_DECREF(value);
        goto invalid;
    }
    if (!PyDict_CheckExact(value)) {
        Py_DECREF(value);
        PyErr_Format(MalformedToken, "the %U is not a JSON object", part);
        return NULL;
    }
    return value;

invalid:
    /* Syntax errors, bad UTF-8 and oversized integers are one rejection; MemoryError is not ours. */
    if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_ValueError)) return NULL;
    PyErr_Clear();
    PyErr_Format(MalformedToken, "the %U is not a valid UTF-8 JSON object", part);
    return NULL;
}

/* --- ecdsa_der: JWS R || S to DER SEQUENCE { INTEGER r, INTEGER s } ------------------------------ */

/* Writes the INTEGER for the unsigned big-endian value[0 .. size) (non-zero) at out; returns its length. */
static Py_ssize_t der_integer(unsigned char *out, const unsigned char *value, Py_ssize_t size) {
    while (size > 1 && *value == 0) value++, size--;
    int pad = *value & 0x80 ? 1 : 0; /* a set top bit would read as negative */
    out[0] = 0x02;
    out[1] = (unsigned char)(size + pad);
    if (pad) out[2] = 0;
    memcpy(out + 2 + pad, value, (size_t)size);
    return 2 + pad + size;
}

static PyObject *ecdsa_der(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1]) || PyBytes_GET_SIZE(args[1]) == 0 ||
        PyBytes_GET_SIZE(args[1]) > 100) {
        PyErr_SetString(PyExc_TypeError, "ecdsa_der() needs (bytes, bytes of 1 to 100 octets)");
        return NULL;
    }
    const unsigned char *signature = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const unsigned char *order = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    Py_ssize_t half = PyBytes_GET_SIZE(args[1]);
    if (PyBytes_GET_SIZE(args[0]) != 2 * half) Py_RETURN_NONE;
    const unsigned char *r = signature, *s = signature + half;
    /* 0 < r, s < order, as big-endian numbers of equal length (see jwt_trust._hotpath.py_ecdsa_der). */
    int r_zero = 1, s_zero = 1;
    for (Py_ssize_t i = 0; i < half; i++) {
        r_zero &= r[i] == 0;
        s_zero &= s[i] == 0;
    }
    if (r_zero || s_zero || memcmp(r, order, (size_t)half) >= 0 || memcmp(s, order, (size_t)half) >= 0)
        Py_RETURN_NONE;
    unsigned char body[2 * (2 + 1 + 100)];
    Py_ssize_t size = der_integer(body, r, half);
    size += der_integer(body + size, s, half);
    int long_form = size >= 0x80;
    PyObject *result = PyBytes_FromStringAndSize(NULL, 2 + long_form + size);
    if (result == NULL) return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    *out++ = 0x30;
    if (long_form) *out++ = 0x81;
    *out++ = (unsigned char)size;
    memcpy(out, body, (size_t)size);
    return result;
}

/* --- check_compact: jwt_trust._hotpath.py_check_compact ---------------------------------------- */

static PyObject *InvalidSignatureError; /* jwt_trust.errors.InvalidSignature */
static PyObject *PAYLOAD;              /* "payload", the part name in parse errors */

static PyObject *check_compact(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "check_compact() needs (token, dict, check_header, context, bool)");
        return NULL;
    }
    PyObject *headers = args[1], *check_header = args[2], *context = args[3];
    int parse_claims = PyObject_IsTrue(args[4]);
    if (parse_claims < 0) return NULL;
    PyObject *parts = split_token(module, args[0]);
    if (parts == NULL) return NULL;
    PyObject *header_b64 = PyTuple_GET_ITEM(parts, 0), *payload = PyTuple_GET_ITEM(parts, 1);
    PyObject *signature = PyTuple_GET_ITEM(parts, 2), *signing_input = PyTuple_GET_ITEM(parts, 3);
    PyObject *entry = NULL, *passed = NULL, *claims = NULL, *result = NULL;

    entry = PyDict_GetItemWithError(headers, header_b64); /* borrowed */
    if (entry != NULL) {
        Py_INCREF(entry);
    } else if (PyErr_Occurred()) {
        goto done;
    } else {
        PyObject *call_args[2] = {header_b64, context};
        entry = PyObject_Vectorcall(check_header, call_args, 2, NULL);
        if (entry == NULL) goto done;
    }
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(entry, 1))) {
        PyErr_SetString(PyExc_TypeError, "a header entry is (header, ((key, check), ...))");
        goto done;
    }
    PyObject *candidates = PyTuple_GET_ITEM(entry, 1);
    passed = PyList_New(0);
    if (passed == NULL) goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(candidates); i++) {
        PyObject *pair = PyTuple_GET_ITEM(candidates, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "a candidate is (key, check)");
            goto done;
        }
        PyObject *check_args[2] = {signature, signing_input};
        PyObject *verdict = PyObject_Vectorcall(PyTuple_GET_ITEM(pair, 1), check_args, 2, NULL);
        if (verdict == NULL) goto done;
        int accepted = PyObject_IsTrue(verdict);
        Py_DECREF(verdict);
        if (accepted < 0 || (accepted && PyList_Append(passed, PyTuple_GET_ITEM(pair, 0)) < 0)) goto done;
    }
    if (PyList_GET_SIZE(passed) == 0) {
        PyErr_SetString(InvalidSignatureError, "the signature does not verify");
        goto done;
    }
    if (parse_claims) {
        PyObject *parse_args[2] = {payload, PAYLOAD};
        claims = parse_object(module, parse_args, 2);
        if (claims == NULL) goto done;
    } else {
        claims = Py_NewRef(Py_None);
    }
    PyObject *passed_keys = PyList_AsTuple(passed);
    if (passed_keys == NULL) goto done;
    result = PyTuple_Pack(4, PyTuple_GET_ITEM(entry, 0), payload, claims, passed_keys);
    Py_DECREF(passed_keys);
done:
    Py_XDECREF(claims);
    Py_XDECREF(passed);
    Py_XDECREF(entry);
    Py_DECREF(parts);
    return result;
}

/* --- check_signature: jwt_trust._hotpath.py_check_signature ------------------------------------ */

static PyObject *InvalidSignature; /* cryptography.exceptions.InvalidSignature */

static PyObject *check_signature(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyTuple_CheckExact(args[1]) || !PyLong_CheckExact(args[2]) ||
        !(args[3] == Py_None || PyBytes_Check(args[3])) || !PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "check_signature() needs (verify, tuple, int, bytes | None, bytes, data)");
        return NULL;
    }
    PyObject *verify = args[0], *extra = args[1], *order = args[3], *signature = args[4], *data = args[5];
    PyObject *encoded;
    if (order != Py_None) {
        PyObject *der_args[2] = {signature, order};
        encoded = ecdsa_der(module, der_args, 2);
        if (encoded == NULL) return NULL;
        if (encoded == Py_None) {
            Py_DECREF(encoded);
            Py_RETURN_FALSE;
        }
    } else {
        Py_ssize_t size = PyLong_AsSsize_t(args[2]);
        if (size == -1 && PyErr_Occurred()) return NULL;
        if (PyBytes_GET_SIZE(signature) != size) Py_RETURN_FALSE;
        encoded = Py_NewRef(signature);
    }
    /* verify(encoded, data, *extra), without building a tuple for the common short case. */
    PyObject *call_args[6] = {encoded, data};
    Py_ssize_t count = 2 + PyTuple_GET_SIZE(extra);
    if (count > 6) {
        Py_DECREF(encoded);
        PyErr_SetString(PyExc_TypeError, "check_signature() takes at most 4 extra arguments");
        return NULL;
    }
    for (Py_ssize_t i = 2; i < count; i++) call_args[i] = PyTuple_GET_ITEM(extra, i - 2);
    PyObject *result = PyObject_Vectorcall(verify, call_args, (size_t)count, NULL);
    Py_DECREF(encoded);
    if (result != NULL) {
        Py_DECREF(result);
        Py_RETURN_TRUE;
    }
    /* A bad signature, or (RSA) a signature the backend cannot even parse: False, never an error. */
    if (PyErr_ExceptionMatches(InvalidSignature) || PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    return NULL;
}

/* --- check_claims: jwt_trust._hotpath.py_check_claims ----------------------------------------- */

static PyObject *EXP, *NBF, *IAT, *AUD; /* from KNOWN_NAMES */

/* 0 if value is an int or a finite float (exact types: bool is refused), else -1 with MalformedClaim. */
static int finite_number(PyObject *value, const char *name) {
    if (PyLong_CheckExact(value) || (PyFloat_CheckExact(value) && isfinite(PyFloat_AS_DOUBLE(value)))) return 0;
    PyErr_Format(MalformedClaim, "%s must be a finite number", name);
    return -1;
}

/* claims[name], or NULL for absent and null alike (borrowed); NULL with an exception on error. */
static PyObject *claim(PyObject *claims, PyObject *name) {
    PyObject *value = PyDict_GetItemWithError(claims, name);
    return value == Py_None ? NULL : value;
}

/* value > bound, compared exactly as Python compares an int or float with a float. */
static int greater(PyObject *value, double bound) {
    if (PyFloat_CheckExact(value)) return PyFloat_AS_DOUBLE(value) > bound;
    PyObject *bound_object = PyFloat_FromDouble(bound);
    if (bound_object == NULL) return -1;
    int result = PyObject_RichCompareBool(value, bound_object, Py_GT);
    Py_DECREF(bound_object);
    return result;
}

/* Whether str is one of the audiences (1), not (0), or an error (-1). */
static int accepted(PyObject *audiences, PyObject *str) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(audiences); i++) {
        int equal = PyObject_RichCompareBool(str, PyTuple_GET_ITEM(audiences, i), Py_EQ);
        if (equal != 0) return equal;
    }
    return 0;
}

static PyObject *check_claims(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyDict_Check(args[0]) || !PyTuple_CheckExact(args[3]) || !PyTuple_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "check_claims() needs (dict, now, leeway, tuple, tuple)");
        return NULL;
    }
    PyObject *claims = args[0], *audiences = args[3], *required = args[4];
    double now = PyFloat_AsDouble(args[1]);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    double leeway = PyFloat_AsDouble(args[2]);
    if (leeway == -1.0 && PyErr_Occurred()) return NULL;
    int result;

    PyObject *exp = claim(claims, EXP);
    if (exp == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(MissingClaim, "the token has no exp claim");
        return NULL;
    }
    if (finite_number(exp, "exp") < 0 || (result = greater(exp, now - leeway)) < 0) return NULL;
    if (!result) {
        PyErr_SetString(ExpiredToken, "the token has expired");
        return NULL;
    }
    double latest = now + leeway;
    PyObject *nbf = claim(claims, NBF);
    if (nbf != NULL) {
        if (finite_number(nbf, "nbf") < 0 || (result = greater(nbf, latest)) < 0) return NULL;
        if (result) {
            PyErr_SetString(NotYetValid, "the token is not valid yet (nbf)");
            return NULL;
        }
    } else if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *iat = claim(claims, IAT);
    if (iat != NULL) {
        if (finite_number(iat, "iat") < 0 || (result = greater(iat, latest)) < 0) return NULL;
        if (result) {
            PyErr_SetString(IssuedInFuture, "the token was issued in the future (iat)");
            return NULL;
        }
    } else if (PyErr_Occurred()) {
        return NULL;
    }

    PyObject *aud = claim(claims, AUD);
    if (aud != NULL) {
        int found = 0;
        if (PyUnicode_CheckExact(aud)) {
            if (PyTuple_GET_SIZE(audiences) > 0 && (found = accepted(audiences, aud)) < 0) return NULL;
        } else if (PyList_CheckExact(aud)) {
            for (Py_ssize_t i = 0; i < PyList_GET_SIZE(aud); i++) {
                if (!PyUnicode_CheckExact(PyList_GET_ITEM(aud, i))) goto malformed_aud;
            }
            for (Py_ssize_t i = 0; !found && i < PyList_GET_SIZE(aud); i++) {
                if ((found = accepted(audiences, PyList_GET_ITEM(aud, i))) < 0) return NULL;
            }
        } else {
            goto malformed_aud;
        }
        if (PyTuple_GET_SIZE(audiences) == 0) {
            PyErr_SetString(InvalidAudience, "the token has aud but no audience is configured");
            return NULL;
        }
        if (!found) {
            PyErr_SetString(InvalidAudience, "aud does not contain an accepted audience");
            return NULL;
        }
    } else if (PyErr_Occurred()) {
        return NULL;
    } else if (PyTuple_GET_SIZE(audiences) > 0) {
        PyErr_SetString(InvalidAudience, "the token has no aud but an audience is required");
        return NULL;
    }

    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(required); i++) {
        PyObject *name = PyTuple_GET_ITEM(required, i);
        if (claim(claims, name) == NULL) {
            if (!PyErr_Occurred()) PyErr_Format(MissingClaim, "the token has no %R claim", name);
            return NULL;
        }
    }
    Py_RETURN_NONE;

malformed_aud:
    PyErr_SetString(MalformedClaim, "aud must be a string or a list of strings");
    return NULL;
}

/* --- module ----------------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"split_token", split_token, METH_O,
     "split_token(token: bytes) -> (header_b64, payload, signature, signing_input)"},
    {"parse_object", (PyCFunction)(void (*)(void))parse_object, METH_FASTCALL,
     "parse_object(raw: bytes, part: str) -> dict"},
    {"ecdsa_der", (PyCFunction)(void (*)(void))ecdsa_der, METH_FASTCALL,
     "ecdsa_der(signature: bytes, order: bytes) -> bytes | None"},
    {"check_signature", (PyCFunction)(void (*)(void))check_signature, METH_FASTCALL,
     "check_signature(verify, extra: tuple, size: int, order: bytes | None, signature: bytes, data) -> bool"},
    {"check_compact", (PyCFunction)(void (*)(void))check_compact, METH_FASTCALL,
     "check_compact(token: bytes, headers: dict, check_header, context, parse_claims: bool) -> tuple"},
    {"check_claims", (PyCFunction)(void (*)(void))check_claims, METH_FASTCALL,
     "check_claims(claims: dict, now: float, leeway: float, audiences: tuple, required: tuple) -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "jwt_trust._speedups",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    init_sextets();
    for (size_t i = 0; i < sizeof(KNOWN_NAMES) / sizeof(KNOWN_NAMES[0]); i++) {
        if ((KNOWN_NAMES[i] = PyUnicode_InternFromString(KNOWN_NAME_TEXTS[i])) == NULL) return NULL;
    }
    AUD = KNOWN_NAMES[5], EXP = KNOWN_NAMES[6], NBF = KNOWN_NAMES[7], IAT = KNOWN_NAMES[8];
    if ((PAYLOAD = PyUnicode_InternFromString("payload")) == NULL) return NULL;
    PyObject *errors = PyImport_ImportModule("jwt_trust.errors");
    if (errors == NULL) return NULL;
    struct {
        PyObject **slot;
        const char *name;
    } classes[] = {
        {&MalformedToken, "MalformedToken"}, {&MalformedClaim, "MalformedClaim"}, {&MissingClaim, "MissingClaim"},
        {&ExpiredToken, "ExpiredToken"},     {&NotYetValid, "NotYetValid"},       {&IssuedInFuture, "IssuedInFuture"},
        {&InvalidAudience, "InvalidAudience"}, {&InvalidSignatureError, "InvalidSignature"},
    };
    for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
        if ((*classes[i].slot = PyObject_GetAttrString(errors, classes[i].name)) == NULL) {
            Py_DECREF(errors);
            return NULL;
        }
    }
    Py_DECREF(errors);
    PyObject *exceptions = PyImport_ImportModule("cryptography.exceptions");
    if (exceptions == NULL) return NULL;
    InvalidSignature = PyObject_GetAttrString(exceptions, "InvalidSignature");
    Py_DECREF(exceptions);
    if (InvalidSignature == NULL) return NULL;
    return PyModule_Create(&module);
}
