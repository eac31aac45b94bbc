/* html.c: the allowlist sanitiser and the text extractor over Gumbo's tree.
 *
 * Both walk the tree with ain__html_walk, without recursion (a heap stack), so no input reaches
 * the C stack's limit. The sanitiser emits an element only when it is in the allowlist below and
 * fewer than S_EMIT_DEPTH emitted elements are open (deeper, only text); an attribute only when it
 * is in the allowlist, with href, src and style checked by their own rules. Everything it writes
 * from the input is escaped (text and attribute values alike, quotes included), so the output
 * re-parses to the same allowlisted tree. The selftest, with the hostile cases, is
 * html_test.c.
 */
#include <gumbo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail/html.h"
#include "mail/internal.h"
#include "runtime/alloc.h"

#define S_EMIT_DEPTH 256  /* emitted elements open at once; deeper ones are unwrapped */
#define S_URL_MAX    8192 /* a longer href is dropped (data: images may be longer) */

#define S_CSP_HEAD                                                                                 \
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-"      \
    "Policy\" content=\"default-src 'none'; img-src data: cid:"
#define S_CSP_TAIL                                                                                 \
    "; style-src 'unsafe-inline'; font-src data:; form-action 'none'\"><base "                     \
    "target=\"_blank\"></head>"
#define S_HEAD_BLOCKED S_CSP_HEAD S_CSP_TAIL
#define S_HEAD_REMOTE  S_CSP_HEAD " https:" S_CSP_TAIL
#define S_BLOCKED_ATTR " data-blocked-src=\""

/* ------------------------------------------------------------ the capped buffer */

void ain__buf_put(ain__buf_t *b, const char *s, size_t n)
{
    if (b->full || b->len + n > b->max) {
        b->full = true;
        return;
    }
    if (b->len + n + 1 > b->size) {
        size_t want = b->size ? b->size : 1024;
        while (want < b->len + n + 1)
            want *= 2;
        b->data = ain_realloc(b->data, want);
        b->size = want;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ain__buf_puts(ain__buf_t *b, const char *s)
{
    ain__buf_put(b, s, strlen(s));
}

void ain__buf_escape(ain__buf_t *b, const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *ref = NULL;
        switch (s[i]) {
        case '&':
            ref = "&amp;";
            break;
        case '<':
            ref = "&lt;";
            break;
        case '>':
            ref = "&gt;";
            break;
        case '"':
            ref = "&quot;";
            break;
        case '\'':
            ref = "&#39;";
            break;
        case '\0':
            ref = "";
            break;
        default:
            continue;
        }
        ain__buf_put(b, s + run, i - run);
        ain__buf_puts(b, ref);
        run = i + 1;
    }
    ain__buf_put(b, s + run, n - run);
}

/* ------------------------------------------------------------ the walk */

typedef struct {
    const GumboNode *node;
    unsigned next;
} s_frame_t;

void ain__html_walk(const struct GumboInternalNode *root, ain__html_enter_fn enter,
                    ain__html_leave_fn leave, void *ctx)
{
    size_t n = 0, size = 64;
    s_frame_t *st = ain_malloc(size * sizeof *st);
    st[n++] = (s_frame_t){root, 0};
    while (n > 0) {
        s_frame_t *f = &st[n - 1];
        if (f->next == f->node->v.element.children.length) {
            if (--n > 0 && leave)
                leave(ctx, f->node);
            continue;
        }
        const GumboNode *c = f->node->v.element.children.data[f->next++];
        int go = enter(ctx, c);
        if (go < 0)
            break;
        if (go == 0)
            continue;
        if (n == size)
            st = ain_realloc(st, (size *= 2) * sizeof *st);
        st[n++] = (s_frame_t){c, 0};
    }
    free(st);
}

/* ------------------------------------------------------------ what is allowed */

typedef enum { S_UNWRAP, S_KEEP, S_DROP } s_class_t;

/* What becomes of an HTML element: kept, dropped with its content, or unwrapped (its
 * children kept), the fate of every element not named here, unknown ones included. */
/* Case labels grouped: one table. */
// clang-format off
static s_class_t s_class(GumboTag tag)
{
    switch (tag) {
    case GUMBO_TAG_A: case GUMBO_TAG_ABBR: case GUMBO_TAG_ACRONYM: case GUMBO_TAG_ADDRESS:
    case GUMBO_TAG_ARTICLE: case GUMBO_TAG_ASIDE: case GUMBO_TAG_B: case GUMBO_TAG_BDI:
    case GUMBO_TAG_BDO: case GUMBO_TAG_BIG: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_BR:
    case GUMBO_TAG_CAPTION: case GUMBO_TAG_CENTER: case GUMBO_TAG_CITE: case GUMBO_TAG_CODE:
    case GUMBO_TAG_COL: case GUMBO_TAG_COLGROUP: case GUMBO_TAG_DD: case GUMBO_TAG_DEL:
    case GUMBO_TAG_DFN: case GUMBO_TAG_DIV: case GUMBO_TAG_DL: case GUMBO_TAG_DT:
    case GUMBO_TAG_EM: case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_FIGURE: case GUMBO_TAG_FONT:
    case GUMBO_TAG_FOOTER: case GUMBO_TAG_H1: case GUMBO_TAG_H2: case GUMBO_TAG_H3:
    case GUMBO_TAG_H4: case GUMBO_TAG_H5: case GUMBO_TAG_H6: case GUMBO_TAG_HEADER:
    case GUMBO_TAG_HR: case GUMBO_TAG_I: case GUMBO_TAG_IMG: case GUMBO_TAG_INS:
    case GUMBO_TAG_KBD: case GUMBO_TAG_LI: case GUMBO_TAG_MAIN: case GUMBO_TAG_MARK:
    case GUMBO_TAG_NOBR: case GUMBO_TAG_OL: case GUMBO_TAG_P: case GUMBO_TAG_PRE: case GUMBO_TAG_Q:
    case GUMBO_TAG_S: case GUMBO_TAG_SAMP: case GUMBO_TAG_SECTION: case GUMBO_TAG_SMALL:
    case GUMBO_TAG_SPAN: case GUMBO_TAG_STRIKE: case GUMBO_TAG_STRONG: case GUMBO_TAG_SUB:
    case GUMBO_TAG_SUP: case GUMBO_TAG_TABLE: case GUMBO_TAG_TBODY: case GUMBO_TAG_TD:
    case GUMBO_TAG_TFOOT: case GUMBO_TAG_TH: case GUMBO_TAG_THEAD: case GUMBO_TAG_TIME:
    case GUMBO_TAG_TR: case GUMBO_TAG_TT: case GUMBO_TAG_U: case GUMBO_TAG_UL: case GUMBO_TAG_VAR:
    case GUMBO_TAG_WBR:
        return S_KEEP;
    case GUMBO_TAG_SCRIPT: case GUMBO_TAG_STYLE: case GUMBO_TAG_IFRAME: case GUMBO_TAG_FRAME:
    case GUMBO_TAG_FRAMESET: case GUMBO_TAG_OBJECT: case GUMBO_TAG_EMBED: case GUMBO_TAG_APPLET:
    case GUMBO_TAG_PARAM: case GUMBO_TAG_NOSCRIPT: case GUMBO_TAG_TEMPLATE: case GUMBO_TAG_HEAD:
    case GUMBO_TAG_TITLE: case GUMBO_TAG_META: case GUMBO_TAG_LINK: case GUMBO_TAG_BASE:
    case GUMBO_TAG_SVG: case GUMBO_TAG_MATH: case GUMBO_TAG_TEXTAREA: case GUMBO_TAG_SELECT:
    case GUMBO_TAG_OPTION: case GUMBO_TAG_OPTGROUP: case GUMBO_TAG_INPUT: case GUMBO_TAG_BUTTON:
    case GUMBO_TAG_NOEMBED: case GUMBO_TAG_NOFRAMES: case GUMBO_TAG_XMP: case GUMBO_TAG_CANVAS:
    case GUMBO_TAG_AUDIO: case GUMBO_TAG_VIDEO: case GUMBO_TAG_SOURCE: case GUMBO_TAG_TRACK:
    case GUMBO_TAG_MAP: case GUMBO_TAG_AREA: case GUMBO_TAG_KEYGEN: case GUMBO_TAG_DATALIST:
    case GUMBO_TAG_BGSOUND: case GUMBO_TAG_ISINDEX: case GUMBO_TAG_MENUITEM:
        return S_DROP;
    default:
        return S_UNWRAP;
    }
}
// clang-format on

static s_class_t s_class_of(const struct GumboInternalNode *n)
{
    if (n->type == GUMBO_NODE_TEMPLATE)
        return S_DROP;
    if (n->v.element.tag_namespace != GUMBO_NAMESPACE_HTML)
        return S_DROP; /* svg and math, and whatever is inside them */
    return s_class(n->v.element.tag);
}

bool ain__html_dropped(const struct GumboInternalNode *n)
{
    return s_class_of(n) == S_DROP;
}

static bool s_void(GumboTag tag)
{
    return tag == GUMBO_TAG_BR || tag == GUMBO_TAG_HR || tag == GUMBO_TAG_IMG ||
           tag == GUMBO_TAG_COL || tag == GUMBO_TAG_WBR;
}

/* Attributes kept as they are (escaped) on any kept element; href, src and style have rules. */
static const char *const s_attrs[] = {
    "title",   "dir",         "lang",        "align",   "valign",  "width",    "height", "bgcolor",
    "border",  "color",       "face",        "size",    "colspan", "rowspan",  "nowrap", "scope",
    "headers", "cellpadding", "cellspacing", "summary", "alt",     "hspace",   "vspace", "start",
    "type",    "reversed",    "value",       "span",    "clear",   "datetime", "abbr",   NULL};

static bool s_attr_plain(const char *name)
{
    for (const char *const *a = s_attrs; *a; a++)
        if (strcmp(*a, name) == 0)
            return true;
    return false;
}

/* A URL as a browser reads it: ASCII tab and newlines removed anywhere, C0 controls and spaces
 * trimmed at both ends. Returns a malloc'd copy. */
static char *s_url_clean(const char *v)
{
    size_t n = strlen(v), o = 0;
    char *u = ain_malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        if (v[i] != '\t' && v[i] != '\n' && v[i] != '\r')
            u[o++] = v[i];
    while (o > 0 && (unsigned char)u[o - 1] <= 0x20)
        o--;
    u[o] = '\0';
    size_t lead = 0;
    while (lead < o && (unsigned char)u[lead] <= 0x20)
        lead++;
    memmove(u, u + lead, o - lead + 1);
    return u;
}

static bool s_prefix(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static bool s_href_ok(const char *u)
{
    return strlen(u) <= S_URL_MAX && (u[0] == '#' || s_prefix(u, "http://") ||
                                      s_prefix(u, "https://") || s_prefix(u, "mailto:"));
}

static bool s_data_image_ok(const char *u)
{
    static const char *const types[] = {"png", "gif", "jpeg", "jpg", "webp", NULL};
    if (!s_prefix(u, "data:image/"))
        return false;
    u += strlen("data:image/");
    for (const char *const *t = types; *t; t++) {
        size_t n = strlen(*t);
        if (strncasecmp(u, *t, n) == 0 && (u[n] == ';' || u[n] == ','))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------ the sanitiser */

typedef struct {
    ain__buf_t out;
    unsigned flags, blocked, cids;
    size_t kept; /* kept elements open; past S_EMIT_DEPTH they are unwrapped */
} s_san_t;

static void s_attr(s_san_t *s, const char *name, const char *value)
{
    ain__buf_put(&s->out, " ", 1);
    ain__buf_puts(&s->out, name);
    ain__buf_put(&s->out, "=\"", 2);
    ain__buf_escape(&s->out, value, strlen(value));
    ain__buf_put(&s->out, "\"", 1);
}

static void s_style(s_san_t *s, const char *value)
{
    size_t mark = s->out.len;
    ain__buf_puts(&s->out, " style=\"");
    if (ain__css_filter(&s->out, value) == 0 && !s->out.full)
        s->out.len = mark; /* nothing kept: no empty attribute */
    else
        ain__buf_put(&s->out, "\"", 1);
}

static void s_img_src(s_san_t *s, const char *value)
{
    char *u = s_url_clean(value);
    if (s_prefix(u, "cid:")) {
        s->cids++;
        s_attr(s, "src", u);
    } else if (s_data_image_ok(u)) {
        s_attr(s, "src", u);
    } else if (s_prefix(u, "http://") || s_prefix(u, "https://")) {
        if (s->flags & AIN_HTML_ALLOW_REMOTE) {
            s_attr(s, "src", u);
        } else {
            s->blocked++;
            s_attr(s, "data-blocked-src", u);
        }
    }
    free(u);
}

static void s_attributes(s_san_t *s, const GumboElement *e)
{
    for (unsigned i = 0; i < e->attributes.length; i++) {
        const GumboAttribute *a = e->attributes.data[i];
        if (strcmp(a->name, "style") == 0) {
            s_style(s, a->value);
        } else if (strcmp(a->name, "href") == 0 && e->tag == GUMBO_TAG_A) {
            char *u = s_url_clean(a->value);
            if (s_href_ok(u))
                s_attr(s, "href", u);
            free(u);
        } else if (strcmp(a->name, "src") == 0 && e->tag == GUMBO_TAG_IMG) {
            s_img_src(s, a->value);
        } else if (s_attr_plain(a->name)) {
            s_attr(s, a->name, a->value);
        }
    }
    if (e->tag == GUMBO_TAG_A)
        ain__buf_puts(&s->out, " target=\"_blank\" rel=\"noopener noreferrer\"");
}

static void s_start_tag(s_san_t *s, const GumboNode *n)
{
    const GumboElement *e = &n->v.element;
    ain__buf_put(&s->out, "<", 1);
    ain__buf_puts(&s->out, gumbo_normalized_tagname(e->tag));
    s_attributes(s, e);
    ain__buf_put(&s->out, ">", 1);
    /* The parser drops a newline right after <pre>: keep the text's own. */
    if (e->tag == GUMBO_TAG_PRE && e->children.length > 0) {
        const GumboNode *c = e->children.data[0];
        if ((c->type == GUMBO_NODE_TEXT || c->type == GUMBO_NODE_WHITESPACE) &&
            c->v.text.text[0] == '\n')
            ain__buf_put(&s->out, "\n", 1);
    }
}

const struct GumboInternalNode *ain__html_body(const struct GumboInternalOutput *o)
{
    const GumboVector *kids = &o->root->v.element.children;
    for (unsigned i = 0; i < kids->length; i++) {
        const GumboNode *c = kids->data[i];
        if (c->type == GUMBO_NODE_ELEMENT && c->v.element.tag == GUMBO_TAG_BODY)
            return c;
    }
    return NULL; /* a frameset document */
}

static int s_enter(void *ctx, const GumboNode *c)
{
    s_san_t *s = ctx;
    if (s->out.full)
        return -1;
    if (c->type == GUMBO_NODE_TEXT || c->type == GUMBO_NODE_WHITESPACE) {
        ain__buf_escape(&s->out, c->v.text.text, strlen(c->v.text.text));
        return 0;
    }
    if (c->type != GUMBO_NODE_ELEMENT && c->type != GUMBO_NODE_TEMPLATE)
        return 0; /* comments; CDATA only exists inside svg and math */
    s_class_t k = s_class_of(c);
    if (k == S_DROP)
        return 0;
    if (k == S_KEEP) {
        if (s->kept < S_EMIT_DEPTH) {
            s_start_tag(s, c);
            if (s_void(c->v.element.tag))
                return 0;
        }
        s->kept++;
    }
    return 1;
}

/* A kept element was emitted when fewer than S_EMIT_DEPTH kept elements held it. */
static void s_leave(void *ctx, const GumboNode *n)
{
    s_san_t *s = ctx;
    if (s_class_of(n) == S_KEEP && --s->kept < S_EMIT_DEPTH) {
        ain__buf_puts(&s->out, "</");
        ain__buf_puts(&s->out, gumbo_normalized_tagname(n->v.element.tag));
        ain__buf_put(&s->out, ">", 1);
    }
}

size_t ain__utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (len == 0 || s[0] > 0xF4 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
        return 0;
    return len;
}

/* The fallback document: the source as escaped text, cut to fit, invalid UTF-8 replaced. */
static void s_escaped_doc(const char *html, size_t len, ain_html_result_t *out)
{
    static const char tail[] = "</pre></body></html>";
    ain__buf_t b = {.max = AIN_HTML_MAX_OUTPUT - sizeof tail};
    ain__buf_puts(&b, S_HEAD_BLOCKED "<body><pre style=\"white-space:pre-wrap\">");
    const unsigned char *u = (const unsigned char *)html;
    for (size_t i = 0; i < len && !b.full;) {
        size_t n = ain__utf8_len(u + i, len - i);
        if (n == 0)
            ain__buf_puts(&b, "\xEF\xBF\xBD");
        else
            ain__buf_escape(&b, html + i, n);
        i += n ? n : 1;
    }
    b.full = false;
    b.max += sizeof tail;
    ain__buf_puts(&b, tail);
    *out = (ain_html_result_t){.doc = b.data, .len = b.len, .truncated = true};
}

struct GumboInternalOutput *ain__html_parse(const char *html, size_t len, char **copy)
{
    GumboOptions opts = kGumboDefaultOptions;
    opts.max_errors = 0; /* we never read them */
    size_t n = len > AIN_HTML_MAX_INPUT ? AIN_HTML_MAX_INPUT : len, glen = 0;
    *copy = ain__html_guard(html, n, AIN_HTML_MAX_DEPTH, &glen);
    if (*copy)
        return gumbo_parse_with_options(&opts, *copy, glen);
    return gumbo_parse_with_options(&opts, html, n);
}

void ain__html_free(struct GumboInternalOutput *o, char *copy)
{
    GumboOptions opts = kGumboDefaultOptions;
    gumbo_destroy_output(&opts, o);
    free(copy);
}

/* The document of a parsed tree into *out; the text, when wanted, from the same tree. */
static void s_sanitize_tree(const GumboOutput *o, const char *html, size_t len, unsigned flags,
                            ain_html_result_t *out)
{
    s_san_t s = {.out = {.max = AIN_HTML_MAX_OUTPUT}, .flags = flags};
    ain__buf_puts(&s.out, flags & AIN_HTML_ALLOW_REMOTE ? S_HEAD_REMOTE : S_HEAD_BLOCKED);
    const GumboNode *body = ain__html_body(o);
    ain__buf_puts(&s.out, "<body");
    if (body)
        s_attributes(&s, &body->v.element);
    ain__buf_put(&s.out, ">", 1);
    if (body)
        ain__html_walk(body, s_enter, s_leave, &s);
    ain__buf_puts(&s.out, "</body></html>");
    if (s.out.full) {
        free(s.out.data);
        s_escaped_doc(html, len, out);
    } else {
        *out = (ain_html_result_t){
            .doc = s.out.data, .len = s.out.len, .blocked_images = s.blocked, .cid_images = s.cids};
    }
    if (flags & AIN_HTML_TEXT)
        out->text = ain__html_text(o, len, &out->text_len);
}

int ain_html_sanitize(const char *html, size_t len, unsigned flags, ain_html_result_t *out)
{
    if (!out || (!html && len))
        return -1;
    if (len > AIN_HTML_MAX_INPUT) {
        s_escaped_doc(html, len, out);
        if (flags & AIN_HTML_TEXT) /* not parsed for the document; the text parses the head */
            out->text = ain_html_to_text(html, len, &out->text_len);
        return 0;
    }
    if (!html)
        html = "";
    char *copy;
    GumboOutput *o = ain__html_parse(html, len, &copy);
    s_sanitize_tree(o, html, len, flags, out);
    ain__html_free(o, copy);
    return 0;
}

char *ain_html_allow_remote(const char *doc, size_t len, size_t *out_len)
{
    ain__buf_t b = {.max = (size_t)-1};
    const char *s = doc, *end = doc + len;
    size_t head = strlen(S_HEAD_BLOCKED), attr = strlen(S_BLOCKED_ATTR);
    if (len >= head && memcmp(doc, S_HEAD_BLOCKED, head) == 0) {
        ain__buf_puts(&b, S_HEAD_REMOTE);
        s += head;
    }
    for (const char *at; (at = memmem(s, (size_t)(end - s), S_BLOCKED_ATTR, attr)) != NULL;
         s = at + attr) {
        ain__buf_put(&b, s, (size_t)(at - s));
        ain__buf_puts(&b, " src=\"");
    }
    ain__buf_put(&b, s, (size_t)(end - s));
    if (!b.data)
        b.data = ain_strdup("");
    *out_len = b.len;
    return b.data;
}
