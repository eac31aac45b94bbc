/* guard.c: the depth guard run before Gumbo, flattening nesting past a bound.
 *
 * Gumbo 0.10 checks scopes by walking its stack of open elements, so a document of N nested
 * elements costs about N^2 (5,000 nested divs take 0.8 s, 10,000 nested tables 15 s). Gumbo has
 * no depth option, so this pass counts open elements the way the HTML5 tokenizer sees tags
 * (comments, bogus comments, quoted attribute values) and drops start tags that would open more
 * than the bound, and the end tags that would close them. Text is never dropped.
 *
 * It must never count fewer open elements than Gumbo holds, or the bound would not hold: end
 * tags pop only what the tree builder would certainly pop (scope boundaries stop the search,
 * html/body/head are never popped), and whatever it is unsure of stays counted. Counting too
 * many only flattens a deeply nested, sloppy message sooner. It decides nothing about safety:
 * its output is parsed and sanitised like any input.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail/internal.h"
#include "runtime/alloc.h"

#define S_NAME 16 /* names compared on their first 15 bytes */

/* What an open element is to an end tag's search, found once when it is pushed: the search
 * looks at every open element for every end tag, so it must not look names up in the lists. */
enum { S_SPECIAL = 1, S_SCOPE = 2, S_TABLE_SCOPE = 4, S_TABLE_PART = 8, S_FOREIGN = 16 };

typedef struct {
    char name[S_NAME];
    unsigned kind; /* S_SPECIAL | ... */
} s_open_t;

typedef struct {
    s_open_t *stack;
    int depth, max, dropped;
} s_guard_t;

static bool s_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool s_in(const char *name, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(name, *set) == 0)
            return true;
    return false;
}

static const char *const s_void[] = {"area",  "base",     "br",     "col",      "embed",   "hr",
                                     "img",   "input",    "link",   "meta",     "param",   "source",
                                     "track", "wbr",      "keygen", "basefont", "bgsound", "frame",
                                     "image", "menuitem", NULL};
/* Never popped by an end tag (the tree builder only switches modes); never pushed either. */
static const char *const s_root[] = {"html", "body", "head", NULL};
/* Special elements (HTML5 8.2.3.2), the ones a non-special end tag never pops through. */
static const char *const s_special[] = {"address",
                                        "applet",
                                        "area",
                                        "article",
                                        "aside",
                                        "blockquote",
                                        "body",
                                        "button",
                                        "caption",
                                        "center",
                                        "col",
                                        "colgroup",
                                        "dd",
                                        "details",
                                        "dir",
                                        "div",
                                        "dl",
                                        "dt",
                                        "fieldset",
                                        "figcaption",
                                        "figure",
                                        "footer",
                                        "form",
                                        "frameset",
                                        "h1",
                                        "h2",
                                        "h3",
                                        "h4",
                                        "h5",
                                        "h6",
                                        "header",
                                        "hgroup",
                                        "html",
                                        "iframe",
                                        "li",
                                        "listing",
                                        "main",
                                        "marquee",
                                        "menu",
                                        "nav",
                                        "noembed",
                                        "noframes",
                                        "noscript",
                                        "object",
                                        "ol",
                                        "p",
                                        "plaintext",
                                        "pre",
                                        "section",
                                        "select",
                                        "summary",
                                        "table",
                                        "tbody",
                                        "td",
                                        "template",
                                        "textarea",
                                        "tfoot",
                                        "th",
                                        "thead",
                                        "tr",
                                        "ul",
                                        "xmp",
                                        "svg",
                                        "math",
                                        "foreignobject",
                                        "desc",
                                        "title",
                                        "mi",
                                        "mo",
                                        "mn",
                                        "ms",
                                        "mtext",
                                        "annotation-xml",
                                        NULL};
/* Scope boundaries (plus foreign roots): a special end tag's search stops there. */
static const char *const s_scope[] = {
    "applet",         "caption", "html",     "table", "td",   "th",
    "marquee",        "object",  "template", "svg",   "math", "foreignobject",
    "desc",           "mi",      "mo",       "mn",    "ms",   "mtext",
    "annotation-xml", NULL};
static const char *const s_table_scope[] = {"table", "html", "template", NULL};
static const char *const s_table_parts[] = {"table", "tbody", "thead", "tfoot",
                                            "tr",    "td",    "th",    NULL};
/* A start tag of these closes the same element when it is the current one. */
static const char *const s_self_closing[] = {"p",  "li", "dt",     "dd", "td",
                                             "th", "tr", "option", NULL};
/* Start tags that close an open <p> that is the current element. */
static const char *const s_closes_p[] = {
    "address",  "article",    "aside",   "blockquote", "center", "details", "dir",  "div",  "dl",
    "fieldset", "figcaption", "figure",  "footer",     "header", "hgroup",  "main", "menu", "nav",
    "ol",       "p",          "section", "summary",    "ul",     "h1",      "h2",   "h3",   "h4",
    "h5",       "h6",         "pre",     "listing",    "form",   "table",   "hr",   NULL};

/* Raw text and RCDATA: their content is text up to their own end tag, except in svg or math. */
static const char *const s_raw[] = {"script",   "style",    "xmp",   "iframe", "noembed",
                                    "noframes", "textarea", "title", NULL};

/* Reads a tag name at *p (lower-cased, cut to S_NAME - 1) and moves *p past it. A NUL in the
 * name is U+FFFD to the tokenizer, so it is kept as a byte no known name holds: "script\0x" must
 * not read as "script" (a raw-text element whose content this pass would then not count, while
 * Gumbo nests it; found by the fuzzer). */
static void s_name(const char **p, const char *end, char *name)
{
    size_t n = 0;
    const char *s = *p;
    for (; s < end && !ain__html_space(*s) && *s != '/' && *s != '>'; s++)
        if (n + 1 < S_NAME)
            name[n++] = *s == '\0' ? '?' : (*s >= 'A' && *s <= 'Z') ? (char)(*s + 32) : *s;
    name[n] = '\0';
    *p = s;
}

/* Skips a tag's attributes as the tokenizer does; returns the position after '>' (or end). */
static const char *s_attrs(const char *s, const char *end)
{
    while (s < end) {
        while (s < end && (ain__html_space(*s) || *s == '/'))
            s++;
        if (s >= end || *s == '>')
            return s < end ? s + 1 : end;
        s++; /* the first character of a name may be anything, '=' included */
        while (s < end && !ain__html_space(*s) && *s != '/' && *s != '>' && *s != '=')
            s++;
        while (s < end && ain__html_space(*s))
            s++;
        if (s >= end || *s != '=')
            continue;
        for (s++; s < end && ain__html_space(*s); s++)
            ;
        if (s < end && (*s == '"' || *s == '\'')) {
            const char *q = memchr(s + 1, *s, (size_t)(end - s - 1));
            s = q ? q + 1 : end;
        } else {
            while (s < end && !ain__html_space(*s) && *s != '>')
                s++;
        }
    }
    return end;
}

/* Where a comment opened at s ("<!--") ends, as HTML5 ends it. */
static const char *s_comment(const char *s, const char *end)
{
    s += 4;
    if (s < end && *s == '>')
        return s + 1; /* <!--> */
    if (end - s >= 2 && s[0] == '-' && s[1] == '>')
        return s + 2; /* <!---> */
    for (; s + 2 < end; s++) {
        if (s[0] == '-' && s[1] == '-' && s[2] == '>')
            return s + 3;
        if (s + 3 < end && s[0] == '-' && s[1] == '-' && s[2] == '!' && s[3] == '>')
            return s + 4;
    }
    return end;
}

static unsigned s_kind(const char *name)
{
    return (s_in(name, s_special) ? S_SPECIAL : 0) | (s_in(name, s_scope) ? S_SCOPE : 0) |
           (s_in(name, s_table_scope) ? S_TABLE_SCOPE : 0) |
           (s_in(name, s_table_parts) ? S_TABLE_PART : 0) |
           (strcmp(name, "svg") == 0 || strcmp(name, "math") == 0 ? S_FOREIGN : 0);
}

static void s_push(s_guard_t *g, const char *name)
{
    s_open_t *o = &g->stack[g->depth++];
    memcpy(o->name, name, S_NAME);
    o->kind = s_kind(name);
}

/* A start tag: true to keep it, false to drop it. */
static bool s_start(s_guard_t *g, const char *name)
{
    if (s_in(name, s_void) || s_in(name, s_root))
        return true;
    const char *top = g->depth ? g->stack[g->depth - 1].name : "";
    if (strcmp(top, "p") == 0 && s_in(name, s_closes_p))
        g->depth--;
    else if (strcmp(top, name) == 0 && s_in(name, s_self_closing))
        return true;
    if (g->depth >= g->max) {
        g->dropped++;
        return false;
    }
    s_push(g, name);
    return true;
}

/* An end tag: true to keep it, false to drop it (it closed a dropped start tag). */
static bool s_end(s_guard_t *g, const char *name)
{
    if (g->dropped > 0) {
        g->dropped--;
        return false;
    }
    if (s_in(name, s_root))
        return true;
    unsigned kind = s_kind(name);
    unsigned stop = kind & S_TABLE_PART ? S_TABLE_SCOPE : kind & S_SPECIAL ? S_SCOPE : S_SPECIAL;
    for (int i = g->depth - 1; i >= 0; i--) {
        if (strcmp(g->stack[i].name, name) == 0) {
            g->depth = i;
            break;
        }
        if (g->stack[i].kind & stop)
            break;
    }
    return true;
}

static bool s_foreign(const s_guard_t *g)
{
    for (int i = 0; i < g->depth; i++)
        if (g->stack[i].kind & S_FOREIGN)
            return true;
    return false;
}

/* Where the raw text of element `name` opened before s ends: at its end tag, or the end. */
static const char *s_raw_end(const char *s, const char *end, const char *name)
{
    size_t n = strlen(name);
    for (; (s = memchr(s, '<', (size_t)(end - s))) != NULL; s++) {
        if ((size_t)(end - s) < n + 3)
            return end;
        if (s[1] == '/' && strncasecmp(s + 2, name, n) == 0 &&
            (ain__html_space(s[n + 2]) || s[n + 2] == '/' || s[n + 2] == '>'))
            return s;
    }
    return end;
}

/* The tag at s ('<'): moves *next past it and says whether it is kept. */
static bool s_tag(s_guard_t *g, const char *s, const char *end, const char **next)
{
    char name[S_NAME];
    if (end - s >= 4 && memcmp(s, "<!--", 4) == 0) {
        *next = s_comment(s, end);
        return true;
    }
    if (s + 1 < end && (s[1] == '!' || s[1] == '?')) {
        const char *gt = memchr(s, '>', (size_t)(end - s));
        *next = gt ? gt + 1 : end;
        return true;
    }
    if (s + 2 < end && s[1] == '/') {
        if (!s_alpha(s[2])) { /* </> is nothing, </1...> a bogus comment */
            const char *gt = memchr(s, '>', (size_t)(end - s));
            *next = gt ? gt + 1 : end;
            return true;
        }
        const char *p = s + 2;
        s_name(&p, end, name);
        *next = s_attrs(p, end);
        return s_end(g, name);
    }
    if (s + 1 < end && s_alpha(s[1])) {
        const char *p = s + 1;
        s_name(&p, end, name);
        *next = s_attrs(p, end);
        if (!s_start(g, name))
            return false;
        if (s_in(name, s_raw) && !s_in(name, s_void) && !s_foreign(g))
            *next = s_raw_end(*next, end, name);
        return true;
    }
    *next = s + 1;
    return true;
}

char *ain__html_guard(const char *html, size_t len, int max_depth, size_t *out_len)
{
    s_guard_t g = {.max = max_depth};
    g.stack = ain_malloc((size_t)max_depth * sizeof *g.stack);
    const char *s = html, *end = html + len, *kept = html;
    char *out = NULL;
    size_t n = 0;
    while (s < end) {
        const char *lt = memchr(s, '<', (size_t)(end - s)), *next;
        if (!lt)
            break;
        if (s_tag(&g, lt, end, &next)) {
            s = next;
            continue;
        }
        if (!out)
            out = ain_malloc(len + 1);
        memcpy(out + n, kept, (size_t)(lt - kept));
        n += (size_t)(lt - kept);
        kept = s = next;
    }
    free(g.stack);
    if (!out)
        return NULL;
    memcpy(out + n, kept, (size_t)(end - kept));
    n += (size_t)(end - kept);
    out[n] = '\0';
    *out_len = n;
    return out;
}
