/* html_fuzz.c: libFuzzer target for the mail HTML sanitiser and the text extractor.
 *
 * The first byte's low bit picks AIN_HTML_ALLOW_REMOTE, the rest is the body. Invariants checked:
 * no crash or sanitizer report; the document parsed again by Gumbo holds only allowlisted
 * elements and attributes with safe URLs (ain__html_check), and so does its remote-images
 * variant; both are valid UTF-8 and within AIN_HTML_MAX_OUTPUT; blocked images are counted only
 * when remote images are not allowed; the tree Gumbo builds through the depth guard is at most
 * AIN_HTML_TREE_MAX deep; the text is valid UTF-8 and bounded by its input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mail/html.h"
#include "mail/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool s_utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k)
        if ((k = ain__utf8_len(s + i, n - i)) == 0)
            return false;
    return true;
}

static void s_doc_or_die(const char *doc, size_t len, const char *what)
{
    const char *why = ain__html_check(doc, len);
    if (why || len > AIN_HTML_MAX_OUTPUT || !s_utf8_ok((const unsigned char *)doc, len)) {
        fprintf(stderr, "html_fuzz: %s: %s\n%s\n", what, why ? why : "size or UTF-8", doc);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned flags = (data[0] & 1) ? AIN_HTML_ALLOW_REMOTE : 0;
    const char *html = (const char *)data + 1;
    size_t len = size - 1;
    ain_html_result_t r;
    if (ain_html_sanitize(html, len, flags, &r) != 0)
        abort();
    s_doc_or_die(r.doc, r.len, "document");
    if ((flags & AIN_HTML_ALLOW_REMOTE) && r.blocked_images)
        abort();
    size_t n;
    char *shown = ain_html_allow_remote(r.doc, r.len, &n);
    s_doc_or_die(shown, n, "remote variant");
    free(shown);
    free(r.doc);
    if (ain__html_depth(html, len) > AIN_HTML_TREE_MAX)
        abort(); /* the depth guard let Gumbo build deeper than it promises */
    char *text = ain_html_to_text(html, len, &n);
    if (strlen(text) != n || n > 2 * len + 64 || !s_utf8_ok((const unsigned char *)text, n))
        abort();
    free(text);
    return 0;
}
