/* html.h: mail HTML made safe to show: an allowlist sanitiser and a text extractor, on Gumbo.
 *
 * Mail HTML is hostile input. ain_html_sanitize parses it with Gumbo (an HTML5-conformant
 * parser, so we see the tree a browser would build) and serialises only allowlisted elements and
 * attributes into a complete document meant for an iframe's srcdoc, with a Content-Security-
 * Policy that allows no script, no network but (optionally) images, and no form targets. It
 * never emits a script, a style element, an event handler, a URL with another scheme than
 * http(s), mailto, cid or data:image, or an element Gumbo would parse differently on re-parse
 * (no raw-text elements, no foreign content). ain_html_to_text gives the text of a message that
 * has no text part.
 *
 * Both are bounded: at most AIN_HTML_MAX_INPUT bytes are parsed (beyond it, the document is the
 * source shown as escaped text), nesting past AIN_HTML_MAX_DEPTH is flattened before Gumbo sees
 * it (Gumbo's tree construction costs grow with the square of the depth), and the document is
 * at most AIN_HTML_MAX_OUTPUT bytes.
 *
 * Neither blocks or keeps state: call them from any thread.
 */
#ifndef AIN_MAIL_HTML_H
#define AIN_MAIL_HTML_H

#include <stdbool.h>
#include <stddef.h>

#define AIN_HTML_MAX_INPUT  (2u * 1024 * 1024)
#define AIN_HTML_MAX_OUTPUT (8u * 1024 * 1024)
/* Open elements the pre-pass lets through (mail nests tables some 30 deep). */
#define AIN_HTML_MAX_DEPTH 128

/* ain_html_sanitize flags. */
#define AIN_HTML_ALLOW_REMOTE 1u /* keep http(s) image sources and allow https: in img-src */
#define AIN_HTML_TEXT         2u /* also out->text, the text of the same parse (ain_html_to_text) */

typedef struct {
    char *doc;               /* the document, NUL-terminated; the caller frees it */
    size_t len;              /* its length */
    unsigned blocked_images; /* remote images moved to data-blocked-src (0 when allowed) */
    unsigned cid_images;     /* images naming a cid: part (inlineCidCount) */
    bool truncated;          /* input or output over its bound: doc is escaped text */
    char *text;              /* with AIN_HTML_TEXT, else NULL; NUL-terminated; the caller frees */
    size_t text_len;         /* its length */
} ain_html_result_t;

/* Sanitises `len` bytes of `html` (any bytes: invalid UTF-8 becomes U+FFFD) into out->doc,
 * always a complete document (an empty body for empty input), and with AIN_HTML_TEXT its text
 * into out->text from the same parse (a caller that needs both parses once). Returns 0; -1 only
 * for a NULL argument. out->doc and out->text are malloc'd, the caller's to free. */
int ain_html_sanitize(const char *html, size_t len, unsigned flags, ain_html_result_t *out);

/* Turns a sanitised document into one that shows its remote images: every data-blocked-src
 * becomes src and the policy allows https: images. Only for documents ain_html_sanitize made
 * (their text never holds the attribute's spelling). Returns a malloc'd copy, the caller's, and
 * its length in *out_len. */
char *ain_html_allow_remote(const char *doc, size_t len, size_t *out_len);

/* The text of `len` bytes of HTML: text nodes, whitespace collapsed outside <pre>, a line break
 * at each block element and <br>, a blank line at most between blocks, no script, style or
 * head. Returns a malloc'd NUL-terminated UTF-8 string, the caller's, and its length in
 * *out_len (may be NULL). */
char *ain_html_to_text(const char *html, size_t len, size_t *out_len);

/* Selftest: hostile inputs. */
int ain_html_test(bool verbose);

#endif
