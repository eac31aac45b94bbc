/* html_test.c: the sanitiser's selftest (hostile cases) and the invariant check the fuzzer
 * shares.
 *
 * Each case asserts both halves: nothing executable survives (no script, no event handler, no
 * javascript: or other scheme, nothing outside the allowlist when the output is parsed again)
 * and the legitimate content does (text, formatting, cid images, safe links).
 */
#include <gumbo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail/html.h"
#include "mail/internal.h"
#include "runtime/alloc.h"

/* ------------------------------------------------------------ the invariant */

static const char *s_check_attr(const GumboElement *e, const GumboAttribute *a)
{
    static const char *const head[] = {"charset", "http-equiv", "content", "target", NULL};
    static const char *const plain[] = {
        "title",   "dir",      "lang",    "align",       "valign",      "width",   "height",
        "bgcolor", "border",   "color",   "face",        "size",        "colspan", "rowspan",
        "nowrap",  "scope",    "headers", "cellpadding", "cellspacing", "summary", "alt",
        "hspace",  "vspace",   "start",   "type",        "reversed",    "value",   "span",
        "clear",   "datetime", "abbr",    "style",       NULL};
    const char *const *set = (e->tag == GUMBO_TAG_META || e->tag == GUMBO_TAG_BASE) ? head : plain;
    for (; *set; set++)
        if (strcmp(*set, a->name) == 0)
            return NULL;
    if (e->tag == GUMBO_TAG_A && strcmp(a->name, "href") == 0) {
        const char *v = a->value;
        if (v[0] == '#' || strncasecmp(v, "http://", 7) == 0 ||
            strncasecmp(v, "https://", 8) == 0 || strncasecmp(v, "mailto:", 7) == 0)
            return NULL;
        return "an href with another scheme";
    }
    if (e->tag == GUMBO_TAG_A && (!strcmp(a->name, "target") || !strcmp(a->name, "rel")))
        return NULL;
    if (e->tag == GUMBO_TAG_IMG && strcmp(a->name, "src") == 0) {
        const char *v = a->value;
        if (strncasecmp(v, "cid:", 4) == 0 || strncasecmp(v, "data:image/", 11) == 0 ||
            strncasecmp(v, "http://", 7) == 0 || strncasecmp(v, "https://", 8) == 0)
            return strncasecmp(v, "data:image/svg", 14) == 0 ? "an svg image" : NULL;
        return "an img src with another scheme";
    }
    if (e->tag == GUMBO_TAG_IMG && strcmp(a->name, "data-blocked-src") == 0)
        return NULL;
    return "an attribute outside the allowlist";
}

static const char *s_check_element(const GumboNode *n)
{
    const GumboElement *e = &n->v.element;
    if (n->type == GUMBO_NODE_TEMPLATE || e->tag_namespace != GUMBO_NAMESPACE_HTML)
        return "a template or foreign element";
    // clang-format off
    switch (e->tag) {
    case GUMBO_TAG_HTML: case GUMBO_TAG_HEAD: case GUMBO_TAG_BODY: case GUMBO_TAG_META:
    case GUMBO_TAG_BASE:
        break;
    // clang-format on
    default:
        if (ain__html_dropped(n) || e->tag == GUMBO_TAG_UNKNOWN)
            return "an element outside the allowlist";
        /* What s_class unwraps (form, label...) must not appear either. */
        if (e->tag == GUMBO_TAG_FORM || e->tag == GUMBO_TAG_LABEL || e->tag == GUMBO_TAG_DETAILS)
            return "an unwrapped element";
    }
    for (unsigned i = 0; i < e->attributes.length; i++) {
        const char *why = s_check_attr(e, e->attributes.data[i]);
        if (why)
            return why;
    }
    return NULL;
}

static int s_check_node(void *ctx, const GumboNode *n)
{
    const char **why = ctx;
    if (n->type == GUMBO_NODE_COMMENT || n->type == GUMBO_NODE_CDATA)
        *why = "a comment or CDATA";
    else if (n->type != GUMBO_NODE_ELEMENT && n->type != GUMBO_NODE_TEMPLATE)
        return 0;
    else
        *why = s_check_element(n);
    return *why ? -1 : 1;
}

const char *ain__html_check(const char *doc, size_t len)
{
    if (len < 15 || memcmp(doc, "<!DOCTYPE html>", 15) != 0)
        return "not a document";
    if (strcasestr(doc, "<script") || strcasestr(doc, "<style") || strcasestr(doc, "<svg") ||
        strcasestr(doc, "<iframe") || strcasestr(doc, "<object") || strcasestr(doc, "<embed"))
        return "an active element's tag";
    if (strlen(doc) != len)
        return "a NUL inside";
    GumboOutput *o = gumbo_parse_with_options(&kGumboDefaultOptions, doc, len);
    const char *why = s_check_element(o->root);
    if (!why)
        ain__html_walk(o->root, s_check_node, NULL, &why);
    gumbo_destroy_output(&kGumboDefaultOptions, o);
    return why;
}

typedef struct {
    size_t depth, deepest; /* the open node's, the deepest seen */
} s_depth_t;

static int s_depth_enter(void *ctx, const GumboNode *n)
{
    s_depth_t *d = ctx;
    if (d->depth + 1 > d->deepest)
        d->deepest = d->depth + 1;
    if (n->type != GUMBO_NODE_ELEMENT && n->type != GUMBO_NODE_TEMPLATE)
        return 0;
    d->depth++;
    return 1;
}

static void s_depth_leave(void *ctx, const GumboNode *n)
{
    (void)n;
    ((s_depth_t *)ctx)->depth--;
}

size_t ain__html_depth(const char *html, size_t len)
{
    char *copy;
    GumboOutput *o = ain__html_parse(html, len, &copy);
    s_depth_t d = {1, 1}; /* the root */
    ain__html_walk(o->root, s_depth_enter, s_depth_leave, &d);
    ain__html_free(o, copy);
    return d.deepest;
}

/* ------------------------------------------------------------ the cases */

typedef struct {
    const char *name, *html;
    const char *absent[5];  /* case-insensitive substrings the document must not hold */
    const char *present[4]; /* substrings it must hold (the head's too: anchor them) */
    int blocked, cids;      /* expected counts (-1: any) */
} s_case_t;

#define S_NO_EXEC "<script", "javascript", " on"

static const s_case_t s_cases[] = {
    {"script",
     "<p>hello</p><script>alert(1)</script><SCRIPT SRC=x></SCRIPT>world",
     {S_NO_EXEC, "alert"},
     {"<p>hello</p>", "world"},
     0,
     0},
    {"img onerror",
     "<img src=x onerror=alert(1)><b onclick='x()'>bold</b>",
     {S_NO_EXEC, "alert"},
     {"<img>", "<b>bold</b>"},
     0,
     0},
    {"javascript href",
     "<a href=\"javascript:alert(1)\">a</a><a href=\" JaVaScRiPt:alert(1)\">b</a>",
     {S_NO_EXEC, "href"},
     {">a</a>", ">b</a>"},
     0,
     0},
    {"entity scheme",
     "<a href=\"JaVaScRiPt&colon;alert(1)\">a</a><a href=\"&#106;avascript:x\">b</a>"
     "<a href=\"java&#x09;script:x\">c</a><a href=\"jav\tas\ncript:x\">d</a>",
     {S_NO_EXEC, "href"},
     {">a</a>", ">d</a>"},
     0,
     0},
    {"data href",
     "<a href=\"data:text/html,<script>alert(1)</script>\">x</a>"
     "<a href=\"vbscript:x\">y</a><a href=\"/relative\">z</a>",
     {S_NO_EXEC, "href"},
     {">x</a>", ">z</a>"},
     0,
     0},
    {"good links",
     "<a href=\" https://example.com/a?b=1&amp;c=2 \">site</a><a href=\"mailto:a@b.c\">m</a>"
     "<a href=\"#top\">t</a>",
     {S_NO_EXEC},
     {"href=\"https://example.com/a?b=1&amp;c=2\" target=\"_blank\" rel=\"noopener "
      "noreferrer\">site</a>",
      "href=\"mailto:a@b.c\"", "href=\"#top\""},
     0,
     0},
    {"svg script",
     "<svg><script>alert(1)</script><a xlink:href=\"javascript:x\">s</a></svg>ok",
     {S_NO_EXEC, "<svg"},
     {"<body>ok</body>"},
     0,
     0},
    {"style import",
     "<style>@import url(http://evil/x.css); body{background:url(x)}</style><p>t</p>",
     {"<style", "@import", "url("},
     {"<p>t</p>"},
     0,
     0},
    {"style attr",
     "<p style=\"color:red; width:expression(alert(1)); background:url(http://t/x); "
     "position:fixed; Font-WEIGHT : bold ; behavior:url(x.htc)\">s</p>",
     {"expression", "url", "position", "behavior"},
     {"style=\"color:red;font-weight:bold;\"", ">s</p>"},
     0,
     0},
    {"css escapes",
     "<p style=\"width:e\\78 pression(alert(1));color:/**/red;background:u\\72l(x)\">e</p>",
     {"xpression", "/*", "style="},
     {"<p>e</p>"},
     0,
     0},
    {"iframe form",
     "<iframe src=\"http://evil\">in</iframe><form action=\"http://evil\"><input name=p>"
     "<button>Go</button>label</form>",
     {"<iframe", "<form", "<input", "action"},
     {"label"},
     0,
     0},
    {"base meta link",
     "<head><base href=\"http://evil/\"><meta http-equiv=\"refresh\" content=\"0;url=http://evil\">"
     "<link rel=stylesheet href=http://evil/x.css><title>T</title></head><body>b</body>",
     {"evil", "refresh", "<link", "<title"},
     {"<base target=\"_blank\">", "<body>b</body>"},
     0,
     0},
    {"unknown nested",
     "<foo><bar baz=1><qux>deep <b>text</b></qux></bar></foo>",
     {"<foo", "<bar", "<qux", "baz"},
     {"deep <b>text</b>"},
     0,
     0},
    {"unclosed",
     "<div><p>one<p>two<b>bold<i>both",
     {"<script"},
     {"<p>one</p>", "<b>bold<i>both</i></b>"},
     0,
     0},
    {"comments",
     "a<!-- <script>alert(1)</script> -->b<!--[if mso]><script>x()</script><![endif]-->c"
     "<!--><img src=x onerror=alert(1)>-->d",
     {S_NO_EXEC, "<!--"},
     {"<body>abc<img>--&gt;d</body>"},
     0,
     0},
    {"noscript",
     "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">n</p></noscript>z",
     {"<script", "<img", "<noscript"},
     {"z"},
     0,
     0},
    {"mxss math",
     "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
     {S_NO_EXEC, "<math", "<style"},
     {"<body></body>"},
     0,
     0},
    {"mxss noembed",
     "<noembed><img title=\"</noembed><img src=x onerror=alert(1)>\"></noembed>"
     "<textarea><img src=x onerror=alert(2)></textarea>",
     {S_NO_EXEC},
     {"<body><img>&quot;&gt;</body>"},
     -1,
     0},
    {"quoting",
     "<p title='a\"b&lt;c>d&amp;e&#39;f'>x\"y'z<3>v&amp;</p><img alt=\"\\\" onerror=x\">",
     {"onerror"},
     {"title=\"a&quot;b&lt;c&gt;d&amp;e&#39;f\"", "x&quot;y&#39;z&lt;3&gt;v&amp;",
      "<img alt=\"\\\">"},
     0,
     0},
    {"images",
     "<img src=\"cid:logo@x\"><img src=\"data:image/png;base64,iVBO\"><img "
     "src=\"http://t.co/p.gif\">"
     "<img src=\"data:image/svg+xml,<svg onload=alert(1)>\"><img src=\"https://t/q.png\" srcset=x>",
     {"svg", "srcset", " src=\"http", " src=\"https"},
     {"src=\"cid:logo@x\"", "src=\"data:image/png;base64,iVBO\"",
      "data-blocked-src=\"http://t.co/p.gif\""},
     2,
     1},
    {"non utf8",
     "<p>caf\xe9 \xff\xfe ok\xc3\xa9</p>",
     {S_NO_EXEC},
     {"caf\xef\xbf\xbd", "ok\xc3\xa9"},
     0,
     0},
    {"body attrs",
     "<body bgcolor=\"#fff\" onload=\"x()\" style=\"margin:0\"><table width=600 "
     "cellpadding=0><tr><td align=center><font color=red face=Arial>hi</font></td></tr></table>",
     {S_NO_EXEC},
     {"<body bgcolor=\"#fff\" style=\"margin:0;\">", "<table width=\"600\" cellpadding=\"0\">",
      "<td align=\"center\"><font color=\"red\" face=\"Arial\">hi</font></td>"},
     0,
     0},
    {"nul", "a\0<script>b", {"<script"}, {"<body>a</body>"}, 0, 0},
};

static bool s_has(const char *doc, const char *s, bool nocase)
{
    return nocase ? strcasestr(doc, s) != NULL : strstr(doc, s) != NULL;
}

static int s_case(const s_case_t *c, size_t len, bool verbose)
{
    ain_html_result_t r;
    int fails = 0;
    if (ain_html_sanitize(c->html, len, 0, &r) != 0 || !r.doc) {
        fprintf(stderr, "html %s: no document\n", c->name);
        return 1;
    }
    /* The head has no other attributes; judge the body. */
    const char *body = strstr(r.doc, "<body");
    if (verbose)
        fprintf(stderr, "html %s: %s\n", c->name, body);
    const char *why = ain__html_check(r.doc, r.len);
    if (why)
        fprintf(stderr, "html %s: %s\n", c->name, why), fails++;
    for (int i = 0; i < 5 && c->absent[i]; i++)
        if (!body || s_has(body, c->absent[i], true))
            fprintf(stderr, "html %s: holds %s: %s\n", c->name, c->absent[i], r.doc), fails++;
    for (int i = 0; i < 4 && c->present[i]; i++)
        if (!s_has(r.doc, c->present[i], false))
            fprintf(stderr, "html %s: lacks %s: %s\n", c->name, c->present[i], r.doc), fails++;
    if ((c->blocked >= 0 && r.blocked_images != (unsigned)c->blocked) ||
        r.cid_images != (unsigned)c->cids)
        fprintf(stderr, "html %s: counts %u %u\n", c->name, r.blocked_images, r.cid_images),
            fails++;
    free(r.doc);
    return fails;
}

/* 10,000 nested elements of a kind, then text: bounded, and the text still shown unless it
 * sits in what is dropped (svg). */
static int s_deep(const char *open, bool shown, bool verbose)
{
    size_t n = 10000, ol = strlen(open);
    char *html = ain_malloc(n * ol + 16);
    for (size_t i = 0; i < n; i++)
        memcpy(html + i * ol, open, ol);
    memcpy(html + n * ol, "deep text", 10);
    ain_html_result_t r;
    ain_html_sanitize(html, n * ol + 9, 0, &r);
    const char *why = ain__html_check(r.doc, r.len);
    size_t depth = ain__html_depth(html, n * ol + 9);
    int fails = why != NULL || !strstr(r.doc, "deep text") != !shown || r.truncated ||
                depth > AIN_HTML_TREE_MAX;
    if (fails || verbose)
        fprintf(stderr, "html deep %s: %zu bytes, tree depth %zu, %s\n", open, r.len, depth,
                why ? why : "ok");
    size_t tl;
    char *text = ain_html_to_text(html, n * ol + 9, &tl);
    fails += !strstr(text, "deep text") != !shown;
    free(text);
    free(r.doc);
    free(html);
    return fails;
}

static int s_misc(void)
{
    int fails = 0;
    ain_html_result_t r;
    /* Remote images allowed, then the cached document turned into the same. */
    const char *img = "<img src=\"https://x/a.png\"><p>&quot; data-blocked-src=&quot;</p>";
    ain_html_sanitize(img, strlen(img), AIN_HTML_ALLOW_REMOTE, &r);
    fails += !strstr(r.doc, "<img src=\"https://x/a.png\">") || r.blocked_images != 0 ||
             !strstr(r.doc, "img-src data: cid: https:;");
    ain_html_result_t b;
    ain_html_sanitize(img, strlen(img), 0, &b);
    size_t n;
    char *allowed = ain_html_allow_remote(b.doc, b.len, &n);
    fails += n != r.len || strcmp(allowed, r.doc) != 0;
    fails += b.blocked_images != 1 || strstr(b.doc, "https:;") != NULL;
    free(allowed), free(b.doc), free(r.doc);
    /* Over the input bound: escaped text. */
    size_t big = AIN_HTML_MAX_INPUT + 10;
    char *huge = ain_malloc(big);
    memset(huge, 'a', big);
    memcpy(huge, "<script>x", 9);
    ain_html_sanitize(huge, big, AIN_HTML_TEXT, &r);
    fails += !r.truncated || strstr(r.doc, "<script") || !strstr(r.doc, "&lt;script&gt;x") ||
             r.len > AIN_HTML_MAX_OUTPUT || !r.text || strlen(r.text) != r.text_len;
    free(r.doc), free(r.text), free(huge);
    /* A NUL in a tag name is not that tag: "<script\0" opens no raw text for the depth guard,
     * so the nesting after it is still counted (a fuzzer find). */
    size_t nd = 2000, head = 9;
    char *nul = ain_malloc(head + nd * 5);
    memcpy(nul, "<script\0>", head);
    for (size_t i = 0; i < nd; i++)
        memcpy(nul + head + i * 5, "<div>", 5);
    fails += ain__html_depth(nul, head + nd * 5) > AIN_HTML_TREE_MAX;
    free(nul);
    /* The invariant itself finds what breaks it, however deep in the tree. */
    static const char *const bad[] = {
        "<!DOCTYPE html><html><body><p><b><a href=\"javascript:x\">a</a></b></p></body></html>",
        "<!DOCTYPE html><html><body><div><p>a<!-- c --></p></div></body></html>",
        "<!DOCTYPE html><html><body><table><tr><td><form>f</form></td></tr></table></body></html>",
        "<!DOCTYPE html><html><body><ul><li><i onclick=\"x()\">i</i></li></ul></body></html>"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        fails += ain__html_check(bad[i], strlen(bad[i])) == NULL;
    /* Empty input: an empty body. */
    ain_html_sanitize("", 0, 0, &r);
    fails += !strstr(r.doc, "<body></body></html>");
    free(r.doc);
    if (fails)
        fprintf(stderr, "html misc: %d failures\n", fails);
    return fails;
}

static int s_text(void)
{
    const char *html = "<html><head><title>T</title><style>p{}</style></head><body>"
                       "<p>Hello   <b>big</b>\nworld</p><ul><li>one</li><li>two</li></ul>"
                       "line<br>break<script>x()</script><pre>  a\n  b</pre>&amp;&lt;</body>";
    const char *want = "Hello big world\n\n- one\n- two\n\nline\nbreak\n\n  a\n  b\n\n&<";
    size_t n;
    char *t = ain_html_to_text(html, strlen(html), &n);
    int fails = strcmp(t, want) != 0 || n != strlen(want);
    if (fails)
        fprintf(stderr, "html text: got [%s]\n", t);
    free(t);
    /* The same text from the sanitiser's parse, and none unless asked for. */
    ain_html_result_t r;
    ain_html_sanitize(html, strlen(html), AIN_HTML_TEXT, &r);
    fails += !r.text || strcmp(r.text, want) != 0 || r.text_len != strlen(want);
    free(r.doc), free(r.text);
    ain_html_sanitize(html, strlen(html), 0, &r);
    fails += r.text != NULL;
    free(r.doc);
    return fails;
}

int ain_html_test(bool verbose)
{
    int fails = 0;
    for (size_t i = 0; i < sizeof s_cases / sizeof s_cases[0]; i++) {
        const s_case_t *c = &s_cases[i];
        size_t len = strcmp(c->name, "nul") == 0 ? 12 : strlen(c->html);
        fails += s_case(c, len, verbose);
    }
    fails += s_deep("<div>", true, verbose);
    fails += s_deep("<table><tr><td>", true, verbose);
    fails += s_deep("<div><table></div>", true, verbose);
    fails += s_deep("<b><i><u><font><span>", true, verbose);
    fails += s_deep("<p><script></p></script>", true, verbose);
    fails += s_deep("<svg><g>", false, verbose);
    fails += s_deep("<b><table><td></b>", true, verbose);
    fails += s_deep("<table><tr><td><b><i><u>", true, verbose);
    fails += s_misc();
    fails += s_text();
    if (verbose || fails)
        fprintf(stderr, "html: %d failures\n", fails);
    return fails ? -1 : 0;
}
