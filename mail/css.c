/* css.c: the inline style filter: allowlisted properties with plain values only.
 *
 * A declaration is kept when its property is one of the layout and typography properties mail
 * uses, and its value is made of characters that cannot start anything active: no backslash
 * (CSS escapes could spell "url" or "expression"), no comment, no at-rule, no angle bracket,
 * no brace, and parentheses only after rgb, rgba, hsl, hsla or calc. So url() is gone entirely
 * (no remote image or font slips past the image rule), and so are expression(), behavior,
 * -moz-binding and position (not allowlisted). Values are re-emitted trimmed, as "p:v;".
 */
#include <string.h>
#include <strings.h>

#include "mail/internal.h"

#define S_DECL_MAX 1024 /* a longer declaration is dropped */

static const char *const s_props[] = {"color",           "background-color",
                                      "background",      "font",
                                      "font-family",     "font-size",
                                      "font-style",      "font-weight",
                                      "font-variant",    "text-align",
                                      "text-decoration", "text-indent",
                                      "text-transform",  "line-height",
                                      "letter-spacing",  "word-spacing",
                                      "white-space",     "word-break",
                                      "word-wrap",       "overflow-wrap",
                                      "vertical-align",  "direction",
                                      "margin",          "margin-top",
                                      "margin-right",    "margin-bottom",
                                      "margin-left",     "padding",
                                      "padding-top",     "padding-right",
                                      "padding-bottom",  "padding-left",
                                      "border",          "border-top",
                                      "border-right",    "border-bottom",
                                      "border-left",     "border-color",
                                      "border-style",    "border-width",
                                      "border-radius",   "border-collapse",
                                      "border-spacing",  "width",
                                      "height",          "max-width",
                                      "min-width",       "max-height",
                                      "min-height",      "display",
                                      "table-layout",    "list-style-type",
                                      "text-overflow",   "overflow",
                                      "float",           "clear",
                                      "opacity",         NULL};

static const char *const s_functions[] = {"rgb", "rgba", "hsl", "hsla", "calc", NULL};

/* The allowlisted spelling (lower case) of the property p, or NULL. */
static const char *s_prop(const char *p, size_t n)
{
    for (const char *const *q = s_props; *q; q++)
        if (strlen(*q) == n && strncasecmp(*q, p, n) == 0)
            return *q;
    return NULL;
}

/* True if the `(` at v[i] follows an allowed function name. */
static bool s_function_ok(const char *v, size_t i)
{
    size_t start = i;
    while (start > 0 && ((v[start - 1] >= 'a' && v[start - 1] <= 'z') ||
                         (v[start - 1] >= 'A' && v[start - 1] <= 'Z')))
        start--;
    for (const char *const *f = s_functions; *f; f++)
        if (strlen(*f) == i - start && strncasecmp(*f, v + start, i - start) == 0)
            return true;
    return false;
}

static bool s_value_ok(const char *v, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 && !ain__html_space((char)c))
            return false;
        if (strchr("\\<>{}@;`", c) && c)
            return false;
        if (c == '/' && ((i + 1 < n && v[i + 1] == '*') || (i > 0 && v[i - 1] == '*')))
            return false;
        if (c == '(' && !s_function_ok(v, i))
            return false;
    }
    /* Belt and braces for what the character rules already exclude. */
    static const char *const banned[] = {"url",     "expression", "javascript", "behavior",
                                         "binding", "import",     NULL};
    for (const char *const *b = banned; *b; b++) {
        size_t bl = strlen(*b);
        for (size_t i = 0; i + bl <= n; i++)
            if (strncasecmp(v + i, *b, bl) == 0)
                return false;
    }
    return true;
}

static void s_trim(const char **s, size_t *n)
{
    while (*n && ain__html_space(**s))
        (*s)++, (*n)--;
    while (*n && ain__html_space((*s)[*n - 1]))
        (*n)--;
}

int ain__css_filter(ain__buf_t *b, const char *style)
{
    int kept = 0;
    for (const char *s = style; *s;) {
        const char *semi = strchr(s, ';');
        size_t n = semi ? (size_t)(semi - s) : strlen(s);
        const char *colon = memchr(s, ':', n);
        if (colon && n <= S_DECL_MAX) {
            const char *p = s, *v = colon + 1;
            size_t pn = (size_t)(colon - s), vn = n - pn - 1;
            s_trim(&p, &pn);
            s_trim(&v, &vn);
            const char *prop = s_prop(p, pn);
            if (prop && s_value_ok(v, vn)) {
                ain__buf_puts(b, prop);
                ain__buf_put(b, ":", 1);
                ain__buf_escape(b, v, vn);
                ain__buf_put(b, ";", 1);
                kept++;
            }
        }
        s += n + (semi ? 1 : 0);
    }
    return kept;
}
