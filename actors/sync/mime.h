/* mime.h: a raw RFC 5322 message into what the mail store keeps, with GMime 3.
 *
 * Bodies (the first text/html and text/plain parts that are not
 * attachments) are decoded from their transfer encoding and converted from
 * their charset to UTF-8; attachments (any leaf part with a file name, and
 * any non-text leaf part, e.g. an inline image named only by Content-ID)
 * become metadata rows: part path, file name (RFC 2231 decoded), type,
 * decoded size, Content-ID, inline. Header values (RFC 2047 encoded words)
 * are decoded. Nothing here does I/O; no global state beyond GMime's
 * one-time initialisation. Everything returned is UTF-8 without NUL bytes
 * (the store's JSON cannot hold them).
 */
#ifndef AIN_ACTORS_SYNC_MIME_H
#define AIN_ACTORS_SYNC_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AIN__MIME_ATT_MAX   64 /* attachments kept per message; the rest are counted */
#define AIN__MIME_DEPTH_MAX 16 /* multipart nesting followed */
#define AIN__MIME_TEXT_MAX                                                                         \
    (1u << 20) /* a body longer than this is cut: one message's                                    \
                * change must fit a broker message */

typedef struct {
    char *part;       /* "1.2": the part's path from the top */
    char *filename;   /* may be NULL */
    char *mime_type;  /* "image/png" */
    char *content_id; /* without <>, may be NULL */
    int64_t size;     /* decoded bytes */
    bool is_inline;
} ain__mime_att_t;

typedef struct {
    char *html, *text; /* NULL when the message has none */
    ain__mime_att_t att[AIN__MIME_ATT_MAX];
    size_t natt, natt_dropped;
    /* headers, decoded */
    char *subject, *from_name, *from_addr, *to, *cc, *bcc;
    char *message_id, *in_reply_to, *references, *content_type;
} ain__mime_t;

/* Parses `raw` (`len` bytes, borrowed) into *out (zeroed first). Returns 0,
 * or -1 when it is not a message at all (out is then empty). The caller
 * frees with ain__mime_clear. */
int ain__mime_parse(const char *raw, size_t len, ain__mime_t *out);

void ain__mime_clear(ain__mime_t *m);

/* A header value with RFC 2047 words decoded; caller frees. NULL in, NULL out. */
char *ain__mime_decode_text(const char *value);

/* An address list header ("Zoë <z@x>, b@y") decoded and written the same way
 * whether it came from a raw message or from Gmail's metadata headers, so
 * both paths store equal strings. Caller frees; NULL in, NULL out. */
char *ain__mime_addresses(const char *value);

/* The first mailbox of an address list: its display name (decoded, may be
 * NULL) and address. Returns 0, or -1 when there is none. Caller frees both. */
int ain__mime_first(const char *value, char **name, char **addr);

/* Base64url (padded or not, also the standard alphabet) into bytes; caller
 * frees *out. Returns 0, or -1 on a malformed input. */
int ain__mime_b64url(const char *in, size_t len, char **out, size_t *out_len);

int ain__mime_test(bool verbose);

#endif
