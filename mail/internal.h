/* internal.h: what the files of mail/ share, and nothing outside. */
#ifndef AIN_MAIL_INTERNAL_H
#define AIN_MAIL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "mail/html.h"

/* HTML's (and CSS's) ASCII whitespace: space, tab, LF, CR, FF. */
static inline bool ain__html_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* A growing buffer with a hard cap: an append that would pass `max` is refused whole (so a cut
 * never splits an entity or a tag) and sets `full`; later appends are ignored. */
typedef struct {
    char *data;
    size_t len, size, max;
    bool full;
} ain__buf_t;

void ain__buf_put(ain__buf_t *b, const char *s, size_t n);
void ain__buf_puts(ain__buf_t *b, const char *s);
/* Appends text escaped for HTML text and double-quoted attribute values alike (& < > " ' as
 * references; NUL dropped). */
void ain__buf_escape(ain__buf_t *b, const char *s, size_t n);

/* The length of the valid UTF-8 sequence at s (n > 0 bytes left), 0 if invalid: overlong
 * forms, surrogates and code points past U+10FFFF are invalid (html.c). */
size_t ain__utf8_len(const unsigned char *s, size_t n);

/* The depth guard (guard.c): a tokenizer that follows HTML5's tag and comment syntax closely
 * enough to count open elements, never fewer than Gumbo will hold, and drops the start tags
 * (with their end tags) that would open more than `max_depth`. Returns NULL when nothing was
 * dropped, or a malloc'd copy without them (length in *out_len), the caller's. */
char *ain__html_guard(const char *html, size_t len, int max_depth, size_t *out_len);

/* The inline style filter (css.c): appends to `b` the declarations of `style` whose property is
 * allowlisted and whose value has no url(), expression, escape, comment or at-rule; returns the
 * number appended. */
int ain__css_filter(ain__buf_t *b, const char *style);

/* Gumbo's tree, parsed from at most AIN_HTML_MAX_INPUT bytes through the depth guard (html.c).
 * *copy is what the tree may point into; ain__html_free frees both. */
struct GumboInternalOutput;
struct GumboInternalNode;
struct GumboInternalOutput *ain__html_parse(const char *html, size_t len, char **copy);
void ain__html_free(struct GumboInternalOutput *o, char *copy);
/* A walk over the nodes under `root` (an element) in document order, on a heap stack, so no
 * depth reaches the C stack's limit. enter(ctx, n) sees each node and answers 1 to walk into it
 * (elements and templates only), 0 to pass it by, -1 to end the walk; leave(ctx, n), if not
 * NULL, sees each node walked into after its children. Neither sees the root. */
typedef int (*ain__html_enter_fn)(void *ctx, const struct GumboInternalNode *n);
typedef void (*ain__html_leave_fn)(void *ctx, const struct GumboInternalNode *n);
void ain__html_walk(const struct GumboInternalNode *root, ain__html_enter_fn enter,
                    ain__html_leave_fn leave, void *ctx);
/* The body element, or NULL (a frameset document). Borrowed from the tree. */
const struct GumboInternalNode *ain__html_body(const struct GumboInternalOutput *o);
/* The text of a parsed document (text.c), at most twice `len` (the input's length) plus a
 * little: ain_html_to_text without the parse. Malloc'd, the caller's. */
char *ain__html_text(const struct GumboInternalOutput *o, size_t len, size_t *out_len);
/* True for what the sanitiser drops with its content (script, style, head, svg, ...). */
bool ain__html_dropped(const struct GumboInternalNode *n);
/* The sanitiser's invariant (html_test.c, for the selftest and the fuzzer): `doc` parsed again
 * holds only allowlisted elements and attributes and safe URLs. NULL if so, else what broke. */
const char *ain__html_check(const char *doc, size_t len);
/* The depth of the tree Gumbo builds from `html` through the guard, and the bound the selftest
 * and the fuzzer hold it to: the guard counts open elements, the tree adds what the parser
 * implies (tbody, reconstructed formatting elements), a few per counted one. */
#define AIN_HTML_TREE_MAX (8 * AIN_HTML_MAX_DEPTH)
size_t ain__html_depth(const char *html, size_t len);

#endif
