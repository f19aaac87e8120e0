/*
 * textwc: the text.wc tool, written in C to show that airlock's Tool ABI v1
 * is language-neutral. It is also the tiny tool of the benchmarks.
 *
 * ABI: stdin holds {"text": string}; stdout gets
 * {"bytes":N,"words":N,"lines":N}, counted on the DECODED string:
 *   bytes  its length in UTF-8 (escapes decoded, "\u00e9" counts 2);
 *   words  maximal runs of non-white-space characters, white space being
 *          Unicode White_Space as Go's unicode.IsSpace sees it;
 *   lines  the number of "\n" characters, as wc -l counts them.
 * Malformed input (not one JSON object with exactly the string member
 * "text", or invalid UTF-8) gets a message on stderr and exit status 1.
 *
 * The parser streams: constant memory, no allocation, one pass.
 *
 * Build (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32):
 *   clang --target=wasm32-wasi --sysroot=/usr -O2 -Wl,--strip-all -o textwc.wasm textwc.c
 * or tools/textwc/build.sh.
 */
#include <stdint.h>
#include <unistd.h>

/* ---- input: a buffered reader over fd 0 ------------------------------- */

static unsigned char buf[16 * 1024];
static size_t buf_len, buf_pos;
static uint64_t consumed; /* bytes taken before buf_pos, for messages */
static int eof;

#define END (-1)

static int fill(void) {
	if (eof) return 0;
	for (;;) {
		ssize_t n = read(0, buf, sizeof buf);
		if (n > 0) {
			consumed += buf_len;
			buf_len = (size_t)n;
			buf_pos = 0;
			return 1;
		}
		if (n == 0) {
			eof = 1;
			return 0;
		}
		/* read error: treat as the end; the parser reports truncation */
		eof = 1;
		return 0;
	}
}

static inline int peek(void) {
	if (buf_pos == buf_len && !fill()) return END;
	return buf[buf_pos];
}

static inline int next(void) {
	if (buf_pos == buf_len && !fill()) return END;
	return buf[buf_pos++];
}

static uint64_t offset(void) { return consumed + buf_pos; }

/* ---- output ----------------------------------------------------------- */

static void put(int fd, const char *s, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w <= 0) return;
		s += w;
		n -= (size_t)w;
	}
}

static size_t slen(const char *s) {
	size_t n = 0;
	while (s[n]) n++;
	return n;
}

/* utoa writes v in decimal at the end of a 21-byte area and returns the start. */
static char *utoa(uint64_t v, char *end) {
	*--end = '\0';
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

static _Noreturn void fail(const char *msg) {
	char num[21];
	const char *prefix = "invalid_input: ";
	put(2, prefix, slen(prefix));
	put(2, msg, slen(msg));
	const char *at = " (at byte ";
	put(2, at, slen(at));
	char *n = utoa(offset(), num + sizeof num);
	put(2, n, slen(n));
	put(2, ")\n", 2);
	_exit(1);
}

/* ---- counting --------------------------------------------------------- */

static uint64_t n_bytes, n_words, n_lines;
static int in_word;

/* is_space reports Unicode White_Space, as Go's unicode.IsSpace. */
static inline int is_space(uint32_t c) {
	if (c <= 0x7f) return c == ' ' || (c >= '\t' && c <= '\r');
	switch (c) {
	case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029:
	case 0x202f: case 0x205f: case 0x3000:
		return 1;
	}
	return c >= 0x2000 && c <= 0x200a;
}

static inline void count(uint32_t c) {
	n_bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
	if (c == '\n') n_lines++;
	if (is_space(c)) {
		in_word = 0;
	} else if (!in_word) {
		in_word = 1;
		n_words++;
	}
}

/* ---- JSON ------------------------------------------------------------- */

static void skip_ws(void) {
	for (;;) {
		int c = peek();
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
		buf_pos++;
	}
}

static void expect(int want, const char *msg) {
	if (next() != want) fail(msg);
}

/* utf8_rest decodes the rest of a multi-byte UTF-8 sequence led by c,
 * rejecting overlong forms, surrogates and values past U+10FFFF. */
static uint32_t utf8_rest(int c) {
	uint32_t cp, min;
	int more;
	if (c >= 0xc2 && c <= 0xdf) {
		cp = (uint32_t)c & 0x1f; more = 1; min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		cp = (uint32_t)c & 0x0f; more = 2; min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		cp = (uint32_t)c & 0x07; more = 3; min = 0x10000;
	} else {
		fail("input is not valid UTF-8");
	}
	while (more--) {
		int d = next();
		if (d == END || (d & 0xc0) != 0x80) fail("input is not valid UTF-8");
		cp = (cp << 6) | ((uint32_t)d & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		fail("input is not valid UTF-8");
	return cp;
}

static int hexval(int c) {
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static uint32_t hex4(void) {
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(next());
		if (h < 0) fail("bad \\u escape: want four hex digits");
		v = (v << 4) | (uint32_t)h;
	}
	return v;
}

typedef void (*sink_fn)(uint32_t);

/* parse_string parses a JSON string after its opening quote and hands every
 * decoded code point to sink. Surrogate escapes follow Go's encoding/json: a
 * high surrogate followed by a low one is one code point; any other
 * surrogate becomes U+FFFD and the escape after it is decoded on its own. */
static void parse_string(sink_fn sink) {
	for (;;) {
		int c = next();
		if (c == END) fail("unterminated string");
		if (c == '"') return;
		if (c < 0x20) fail("control character in string: escape it");
		if (c != '\\') {
			sink(c < 0x80 ? (uint32_t)c : utf8_rest(c));
			continue;
		}
		int e = next();
	escape:
		switch (e) {
		case '"': sink('"'); continue;
		case '\\': sink('\\'); continue;
		case '/': sink('/'); continue;
		case 'b': sink('\b'); continue;
		case 'f': sink('\f'); continue;
		case 'n': sink('\n'); continue;
		case 'r': sink('\r'); continue;
		case 't': sink('\t'); continue;
		case 'u': break;
		default: fail("bad escape in string");
		}
		uint32_t u = hex4();
		for (;;) {
			if (u < 0xd800 || u > 0xdfff) {
				sink(u);
				break;
			}
			if (u >= 0xdc00 || peek() != '\\') {
				sink(0xfffd);
				break;
			}
			buf_pos++; /* the backslash of the next escape */
			e = next();
			if (e != 'u') {
				sink(0xfffd);
				goto escape;
			}
			uint32_t lo = hex4();
			if (lo >= 0xdc00 && lo <= 0xdfff) {
				sink(0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00));
				break;
			}
			sink(0xfffd);
			u = lo; /* decode the second escape on its own */
		}
	}
}

/* Member names are decoded and compared with "text". */
static int key_len, key_match;

static void key_sink(uint32_t c) {
	static const char want[] = "text";
	if (key_len >= 4 || c != (uint32_t)want[key_len]) key_match = 0;
	key_len++;
}

int main(void) {
	int seen = 0;
	skip_ws();
	expect('{', "arguments must be a JSON object such as {\"text\": \"...\"}");
	skip_ws();
	if (peek() == '}') fail("missing member \"text\"");
	for (;;) {
		skip_ws();
		expect('"', "want a member name in double quotes");
		key_len = 0;
		key_match = 1;
		parse_string(key_sink);
		if (!key_match || key_len != 4) fail("unknown member: the only argument is \"text\"");
		if (seen) fail("duplicate member \"text\"");
		seen = 1;
		skip_ws();
		expect(':', "want ':' after the member name");
		skip_ws();
		expect('"', "\"text\" must be a string");
		parse_string(count);
		skip_ws();
		int c = next();
		if (c == '}') break;
		if (c != ',') fail("want ',' or '}' after a member");
	}
	skip_ws();
	if (peek() != END) fail("trailing data after the JSON object");

	char a[21], b[21], c[21];
	char out[128];
	size_t n = 0;
	const char *parts[] = {"{\"bytes\":", utoa(n_bytes, a + sizeof a), ",\"words\":",
	                       utoa(n_words, b + sizeof b), ",\"lines\":", utoa(n_lines, c + sizeof c), "}\n"};
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
		for (const char *p = parts[i]; *p; p++) out[n++] = *p;
	put(1, out, n);
	return 0;
}
