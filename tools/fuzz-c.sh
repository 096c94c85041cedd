#!/usr/bin/env bash
# Fuzzes the C hot path (operator/jwt_trust/_speedups.c) against its Python reference for SECONDS
# (default 60) with AddressSanitizer + UndefinedBehaviorSanitizer: builds a sanitized copy of the
# extension into a temporary directory, runs tests/fuzz/fuzz_hotpath.py with that build as
# jwt_trust._speedups (the rest of jwt_trust is the source tree's), keeps the corpus between runs and
# prints libFuzzer's totals. Exits non-zero on any crash: a disagreement between the twins, a
# sanitizer report, a timeout or an out-of-memory.
#   bash tools/fuzz-c.sh 600                 # ten minutes
#   FUZZ_C_DIR=/some/dir bash tools/fuzz-c.sh 30
# A crash leaves crash-<hash> (the input) in $FUZZ_C_DIR/artifacts. Replay it with the same build:
#   KEEP_BUILD=1 bash tools/fuzz-c.sh 1      # prints the build directory and the replay command
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
work="${FUZZ_C_DIR:-${TMPDIR:-/tmp}/jwt-trust-fuzz-c}"
corpus="$work/corpus"
artifacts="$work/artifacts"
log="$work/fuzz.log"
mkdir -p "$corpus" "$artifacts"
python -c 'import atheris' 2>/dev/null || { echo "atheris is not installed: pip install -e '.[dev]'"; exit 1; }

build="$(mktemp -d "${TMPDIR:-/tmp}/jwt-trust-asan.XXXXXX")"
if [ -z "${KEEP_BUILD:-}" ]; then trap 'rm -rf "$build"' EXIT; fi
include="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
suffix="$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
so="$build/_speedups$suffix"
echo "== building the sanitized extension: $so"
# -fsanitize-coverage=trace-pc: edge coverage of the C code for libFuzzer (see the shim below).
gcc -shared -fPIC -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1 \
  -fsanitize-coverage=trace-pc \
  -Wall -Wextra -I"$include" operator/jwt_trust/_speedups.c -o "$so"

# The sanitizer runtime must come before libc in the process, since the python binary is not
# instrumented. atheris documents LD_PRELOADing its bundled asan_with_fuzzer.so (clang's ASan with
# libFuzzer linked in), but only source builds of atheris ship it; the pip wheel (3.0.0 here) does not,
# and there is no clang/compiler-rt here to build one. So we preload gcc's runtime, the one the
# extension was built against. One catch: gcc's libasan also defines libFuzzer's coverage entry points
# (__sanitizer_cov_8bit_counters_init, __sanitizer_cov_trace_cmp*, __sanitizer_weak_hook_*) as no-ops,
# and a preloaded library wins symbol lookup, so atheris would register its Python coverage counters
# with nobody (libFuzzer then sees no coverage at all: "corp: 1/1b"). A small shim, preloaded before
# libasan, defines those symbols and forwards them to the libFuzzer inside atheris' own
# core_with_libfuzzer module once it is loaded. verify_asan_link_order=0 accepts that libasan is second:
# the shim defines no allocator or libc function, so ASan still intercepts malloc, memcpy and friends.
# atheris still prints "Coverage symbols are being provided by a library other than libFuzzer ...
# shim.so": expected, the shim is the forwarder (the NEW/cov lines in the log show coverage works).
asan_runtime="$(gcc -print-file-name=libasan.so)"
[ -f "$asan_runtime" ] || { echo "no ASan runtime found (gcc -print-file-name=libasan.so)"; exit 1; }
atheris_core="$(python -c 'import atheris, glob, os; print(glob.glob(os.path.join(os.path.dirname(atheris.__file__), "core_with_libfuzzer*.so"))[0])')"
shim="$build/libfuzzer_forward.so"
cat >"$build/libfuzzer_forward.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* The symbol in atheris' core module, or NULL before atheris has loaded it (calls are then dropped). */
static void *target(const char *name) {
    static void *core;
    static __thread int resolving; /* dlopen may itself call an intercepted memcmp: no recursion */
    if (core == NULL) {
        const char *path = getenv("JWT_TRUST_FUZZ_CORE");
        if (path == NULL || resolving) return NULL;
        resolving = 1;
        core = dlopen(path, RTLD_NOLOAD | RTLD_LAZY);
        resolving = 0;
        if (core == NULL) return NULL;
    }
    return dlsym(core, name);
}

#define FORWARD(name, params, args)                                                \
    void name params {                                                             \
        static void(*fn) params;                                                   \
        if (fn == NULL && (fn = (void(*) params)target(#name)) == NULL) return;    \
        fn args;                                                                   \
    }

FORWARD(__sanitizer_cov_pcs_init, (const uintptr_t *a, const uintptr_t *b), (a, b))
FORWARD(__sanitizer_cov_trace_cmp1, (uint8_t a, uint8_t b), (a, b))
FORWARD(__sanitizer_cov_trace_cmp2, (uint16_t a, uint16_t b), (a, b))
FORWARD(__sanitizer_cov_trace_cmp4, (uint32_t a, uint32_t b), (a, b))
FORWARD(__sanitizer_cov_trace_cmp8, (uint64_t a, uint64_t b), (a, b))
FORWARD(__sanitizer_cov_trace_const_cmp1, (uint8_t a, uint8_t b), (a, b))
FORWARD(__sanitizer_cov_trace_const_cmp2, (uint16_t a, uint16_t b), (a, b))
FORWARD(__sanitizer_cov_trace_const_cmp4, (uint32_t a, uint32_t b), (a, b))
FORWARD(__sanitizer_cov_trace_const_cmp8, (uint64_t a, uint64_t b), (a, b))
FORWARD(__sanitizer_cov_trace_switch, (uint64_t a, uint64_t *b), (a, b))
FORWARD(__sanitizer_cov_trace_div4, (uint32_t a), (a))
FORWARD(__sanitizer_cov_trace_div8, (uint64_t a), (a))
FORWARD(__sanitizer_cov_trace_gep, (uintptr_t a), (a))
FORWARD(__sanitizer_cov_trace_pc_indir, (uintptr_t a), (a))
FORWARD(__sanitizer_cov_trace_pc_guard, (uint32_t *a), (a))
FORWARD(__sanitizer_cov_trace_pc_guard_init, (uint32_t *a, uint32_t *b), (a, b))
FORWARD(__sanitizer_weak_hook_memcmp, (void *pc, const void *a, const void *b, size_t n, int r), (pc, a, b, n, r))
FORWARD(__sanitizer_weak_hook_strncmp, (void *pc, const char *a, const char *b, size_t n, int r), (pc, a, b, n, r))
FORWARD(__sanitizer_weak_hook_strncasecmp, (void *pc, const char *a, const char *b, size_t n, int r), (pc, a, b, n, r))
FORWARD(__sanitizer_weak_hook_strcmp, (void *pc, const char *a, const char *b, int r), (pc, a, b, r))
FORWARD(__sanitizer_weak_hook_strcasecmp, (void *pc, const char *a, const char *b, int r), (pc, a, b, r))
FORWARD(__sanitizer_weak_hook_strstr, (void *pc, const char *a, const char *b, char *r), (pc, a, b, r))
FORWARD(__sanitizer_weak_hook_strcasestr, (void *pc, const char *a, const char *b, char *r), (pc, a, b, r))
FORWARD(__sanitizer_weak_hook_memmem, (void *pc, const void *a, size_t n, const void *b, size_t m, void *r),
        (pc, a, n, b, m, r))
/* gcc has no -fsanitize-coverage=inline-8bit-counters (clang-only) and libFuzzer dropped its own
 * trace-pc support, so the extension is built with -fsanitize-coverage=trace-pc and every edge lands
 * here: its return address, hashed into 8-bit counters registered with libFuzzer as one more module,
 * next to atheris' Python counters. Collisions only blur coverage a little. */
#define SLOTS (1 << 16)
static uint8_t counters[SLOTS] __attribute__((aligned(4096)));
static uintptr_t pcs[2 * SLOTS]; /* (fake pc, flags) pairs: libFuzzer wants one per counter */

void __sanitizer_cov_trace_pc(void) {
    uintptr_t pc = (uintptr_t)__builtin_return_address(0);
    counters[(pc ^ pc >> 16) & (SLOTS - 1)]++;
}

static void register_native_counters(void) {
    static int registered;
    if (registered) return;
    void (*counters_init)(uint8_t *, uint8_t *) =
        (void (*)(uint8_t *, uint8_t *))target("__sanitizer_cov_8bit_counters_init");
    void (*pcs_init)(const uintptr_t *, const uintptr_t *) =
        (void (*)(const uintptr_t *, const uintptr_t *))target("__sanitizer_cov_pcs_init");
    if (counters_init == NULL || pcs_init == NULL) return;
    registered = 1;
    for (uintptr_t i = 0; i < SLOTS; i++) pcs[2 * i] = i + 1;
    counters_init(counters, counters + SLOTS);
    pcs_init(pcs, pcs + 2 * SLOTS);
}

/* atheris registering its Python counters means libFuzzer is up: the native ones join them. */
void __sanitizer_cov_8bit_counters_init(uint8_t *start, uint8_t *stop) {
    typedef void (*init_fn)(uint8_t *, uint8_t *);
    init_fn forward = (init_fn)target("__sanitizer_cov_8bit_counters_init"); /* atheris' own, not this one */
    if (forward == NULL) return;
    forward(start, stop);
    register_native_counters();
}
C
gcc -shared -fPIC -O2 -Wall -Wextra "$build/libfuzzer_forward.c" -o "$shim" -ldl
export JWT_TRUST_FUZZ_CORE="$atheris_core"

export PYTHONPATH="operator${PYTHONPATH:+:$PYTHONPATH}"
# The harness loads this file as jwt_trust._speedups and checks that it did; JWT_TRUST_PURE_PYTHON
# keeps the package from also loading an unsanitized in-tree build behind it.
export JWT_TRUST_SPEEDUPS_SO="$so" JWT_TRUST_PURE_PYTHON=1
# PYTHONMALLOC=malloc sends every Python object through ASan's allocator, so an overrun of a bytes or
# str buffer the extension fills is caught too (pymalloc's arenas would hide it). Leak detection is
# off: CPython keeps its allocations alive until exit and every one would be reported.
export PYTHONMALLOC=malloc
export ASAN_OPTIONS="detect_leaks=0:verify_asan_link_order=0:symbolize=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
python="$(python -c 'import sys; print(sys.executable)')"  # the interpreter itself, not a pyenv shim script
run() { LD_PRELOAD="$shim:$asan_runtime${LD_PRELOAD:+:$LD_PRELOAD}" "$python" tests/fuzz/fuzz_hotpath.py "$@"; }

run --write-seeds "$corpus" 2>/dev/null
# Which C build the harness really compares (it prints the file it loaded and refuses a different one).
loaded="$(run -runs=0 -artifact_prefix="$artifacts/" "$corpus" 2>&1 | sed -n 's/^fuzz_hotpath: C twin //p')"
echo "== jwt_trust._speedups loaded from: ${loaded:-?}"
[ "$loaded" = "$so" ] || { echo "== the sanitized build was NOT the one loaded"; exit 1; }
echo "== preloaded: $shim:$asan_runtime (forwarding to $atheris_core)"

echo "== fuzzing the C twin for ${seconds}s (corpus $corpus, log $log)"
status=0
run -dict=tests/fuzz/jose.dict -max_total_time="$seconds" -timeout=5 -rss_limit_mb=4096 -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || status=$?

# libFuzzer's last status line carries the totals: "#N DONE cov: C ft: F corp: ... exec/s: E".
grep -E '^#[0-9]+' "$log" | tail -n 1 || true
grep -E '^stat::' "$log" || true
if [ "$status" -ne 0 ] || grep -qE '^(==[0-9]+==ERROR|SUMMARY: (Address|UndefinedBehavior)Sanitizer)|runtime error:' "$log"; then
  echo "== the fuzzer FAILED (exit $status); the end of its log:"
  tail -n 60 "$log"
  ls -1 "$artifacts"
  if [ -n "${KEEP_BUILD:-}" ]; then
    echo "== replay: JWT_TRUST_SPEEDUPS_SO=$so JWT_TRUST_PURE_PYTHON=1 PYTHONMALLOC=malloc" \
      "ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0 JWT_TRUST_FUZZ_CORE=$atheris_core" \
      "LD_PRELOAD=$shim:$asan_runtime PYTHONPATH=operator $python tests/fuzz/fuzz_hotpath.py $artifacts/crash-<hash>"
  fi
  [ "$status" -ne 0 ] || status=1  # a sanitizer report that did not stop the run still fails it
  exit "$status"
fi
if [ -n "${KEEP_BUILD:-}" ]; then echo "== build kept in $build"; fi
echo "== no disagreement, no sanitizer report, no timeout, no out-of-memory in ${seconds}s"
