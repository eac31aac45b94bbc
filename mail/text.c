/* text.c: the text of an HTML body, for messages that have no text part.
 *
 * Walks Gumbo's tree (ain__html_walk, no recursion) skipping what the sanitiser drops with its
 * content (head, script, style, svg...), collapses whitespace outside <pre>, breaks lines at block
 * elements and <br>, keeps at most one blank line, and prefixes list items with "- ". The result is
 * at most twice the input plus a little, so it is bounded like the input.
 */
#include <gumbo.h>
#include <stdlib.h>
#include <string.h>

#include "mail/html.h"
#include "mail/internal.h"
#include "runtime/alloc.h"

typedef struct {
    ain__buf_t out;
    int newlines; /* line breaks wanted before the next text (0..2) */
    bool space;   /* a collapsed space is wanted before the next text */
    int pre;      /* open <pre> elements */
} s_text_t;

/* 1: a line break around it; 2: a blank line around it; 0: inline (<br> is its own case). */
/* Case labels grouped: one table. */
// clang-format off
static int s_block(GumboTag tag)
{
    switch (tag) {
    case GUMBO_TAG_P: case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3: case GUMBO_TAG_H4:
    case GUMBO_TAG_H5: case GUMBO_TAG_H6: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_PRE:
    case GUMBO_TAG_TABLE: case GUMBO_TAG_UL: case GUMBO_TAG_OL: case GUMBO_TAG_DL:
    case GUMBO_TAG_HR:
        return 2;
    case GUMBO_TAG_DIV: case GUMBO_TAG_TR: case GUMBO_TAG_LI: case GUMBO_TAG_DT:
    case GUMBO_TAG_DD: case GUMBO_TAG_CENTER: case GUMBO_TAG_SECTION: case GUMBO_TAG_ARTICLE:
    case GUMBO_TAG_HEADER: case GUMBO_TAG_FOOTER: case GUMBO_TAG_MAIN: case GUMBO_TAG_ADDRESS:
    case GUMBO_TAG_FIGURE: case GUMBO_TAG_CAPTION: case GUMBO_TAG_FORM:
        return 1;
    default:
        return 0;
    }
}
// clang-format on

static void s_break(s_text_t *t, int n)
{
    if (t->out.len > 0 && n > t->newlines)
        t->newlines = n;
    t->space = false;
}

static void s_flush(s_text_t *t)
{
    if (t->newlines) {
        ain__buf_put(&t->out, "\n\n", (size_t)t->newlines);
        t->newlines = 0;
        t->space = false;
    }
    if (t->space && t->out.len > 0 && t->out.data[t->out.len - 1] != '\n')
        ain__buf_put(&t->out, " ", 1);
    t->space = false;
}

static void s_text(s_text_t *t, const char *s)
{
    if (t->pre) {
        s_flush(t);
        ain__buf_puts(&t->out, s);
        return;
    }
    while (*s) {
        if (ain__html_space(*s)) {
            t->space = true;
            s++;
            continue;
        }
        size_t n = 0;
        while (s[n] && !ain__html_space(s[n]))
            n++;
        s_flush(t);
        ain__buf_put(&t->out, s, n);
        s += n;
    }
}

static int s_enter(void *ctx, const GumboNode *c)
{
    s_text_t *t = ctx;
    if (t->out.full)
        return -1;
    if (c->type == GUMBO_NODE_TEXT || c->type == GUMBO_NODE_WHITESPACE) {
        s_text(t, c->v.text.text);
        return 0;
    }
    if ((c->type != GUMBO_NODE_ELEMENT && c->type != GUMBO_NODE_TEMPLATE) || ain__html_dropped(c))
        return 0;
    GumboTag tag = c->v.element.tag;
    if (tag == GUMBO_TAG_BR) { /* a break now, not a wish for the next text */
        s_flush(t);
        ain__buf_put(&t->out, "\n", 1);
        return 0;
    }
    if (s_block(tag))
        s_break(t, s_block(tag));
    if (tag == GUMBO_TAG_LI) {
        s_flush(t);
        ain__buf_puts(&t->out, "- ");
    } else if (tag == GUMBO_TAG_TD || tag == GUMBO_TAG_TH) {
        t->space = true;
    } else if (tag == GUMBO_TAG_PRE) {
        t->pre++;
    }
    return 1;
}

static void s_leave(void *ctx, const GumboNode *n)
{
    s_text_t *t = ctx;
    GumboTag tag = n->v.element.tag;
    if (tag == GUMBO_TAG_PRE)
        t->pre--;
    if (s_block(tag))
        s_break(t, s_block(tag));
}

char *ain__html_text(const struct GumboInternalOutput *o, size_t len, size_t *out_len)
{
    s_text_t t = {.out = {.max = 2 * (len > AIN_HTML_MAX_INPUT ? AIN_HTML_MAX_INPUT : len) + 64}};
    const GumboNode *body = ain__html_body(o);
    if (body)
        ain__html_walk(body, s_enter, s_leave, &t);
    if (!t.out.data)
        t.out.data = ain_strdup("");
    if (out_len)
        *out_len = t.out.len;
    return t.out.data;
}

char *ain_html_to_text(const char *html, size_t len, size_t *out_len)
{
    char *copy;
    if (!html)
        len = 0;
    GumboOutput *o = ain__html_parse(html ? html : "", len, &copy);
    char *text = ain__html_text(o, len, out_len);
    ain__html_free(o, copy);
    return text;
}
