/* mime.c: a raw message into bodies, attachments and headers (see mime.h). */
#include "actors/sync/mime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "runtime/alloc.h"

static pthread_once_t s_once = PTHREAD_ONCE_INIT;

static void s_init(void)
{
    g_mime_init(); /* once per process: GMime's tables are global and read-only after */
}

/* A malloc'd copy that is valid UTF-8 without NUL bytes, at most `max` bytes. */
static char *s_clean(const char *s, size_t len, size_t max)
{
    if (!s)
        return NULL;
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--; /* do not cut a character in two */
    }
    gchar *valid = g_utf8_make_valid(s, (gssize)len);
    size_t n = strlen(valid), o = 0;
    char *out = ain_malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        out[o++] = valid[i];
    out[o] = '\0';
    g_free(valid);
    return out;
}

static char *s_glib_dup(gchar *g)
{
    if (!g)
        return NULL;
    char *out = s_clean(g, strlen(g), AIN__MIME_TEXT_MAX);
    g_free(g);
    return out;
}

char *ain__mime_decode_text(const char *value)
{
    if (!value)
        return NULL;
    pthread_once(&s_once, s_init);
    return s_glib_dup(g_mime_utils_header_decode_text(NULL, value));
}

char *ain__mime_addresses(const char *value)
{
    if (!value)
        return NULL;
    pthread_once(&s_once, s_init);
    InternetAddressList *list = internet_address_list_parse(NULL, value);
    if (!list)
        return ain__mime_decode_text(value);
    char *out = s_glib_dup(internet_address_list_to_string(list, NULL, FALSE));
    g_object_unref(list);
    return out;
}

/* The first mailbox, descending into groups. */
static InternetAddressMailbox *s_first_mailbox(InternetAddressList *list, int depth)
{
    for (int i = 0; list && i < internet_address_list_length(list); i++) {
        InternetAddress *a = internet_address_list_get_address(list, i);
        if (INTERNET_ADDRESS_IS_MAILBOX(a))
            return INTERNET_ADDRESS_MAILBOX(a);
        if (INTERNET_ADDRESS_IS_GROUP(a) && depth < 2) {
            InternetAddressMailbox *m = s_first_mailbox(
                internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)), depth + 1);
            if (m)
                return m;
        }
    }
    return NULL;
}

int ain__mime_first(const char *value, char **name, char **addr)
{
    *name = *addr = NULL;
    if (!value)
        return -1;
    pthread_once(&s_once, s_init);
    InternetAddressList *list = internet_address_list_parse(NULL, value);
    InternetAddressMailbox *m = s_first_mailbox(list, 0);
    int rc = -1;
    if (m && internet_address_mailbox_get_addr(m)) {
        const char *n = internet_address_get_name(INTERNET_ADDRESS(m));
        const char *a = internet_address_mailbox_get_addr(m);
        *name = n && *n ? s_clean(n, strlen(n), 1024) : NULL;
        *addr = s_clean(a, strlen(a), 1024);
        rc = 0;
    }
    if (list)
        g_object_unref(list);
    return rc;
}

int ain__mime_b64url(const char *in, size_t len, char **out, size_t *out_len)
{
    char *buf = ain_malloc(len / 4 * 3 + 4);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i], v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-' || c == '+')
            v = 62;
        else if (c == '_' || c == '/')
            v = 63;
        else if (c == '=' || c == '\r' || c == '\n')
            continue;
        else {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (char)((acc >> bits) & 0xFF);
        }
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
}

/* ------------------------------------------------------------ the walk */

/* A part's content, transfer-decoded, into UTF-8 from its charset. */
static char *s_text_of(GMimePart *part)
{
    GMimeDataWrapper *content = g_mime_part_get_content(part);
    if (!content)
        return NULL;
    GMimeStream *mem = g_mime_stream_mem_new();
    GMimeStream *filtered = g_mime_stream_filter_new(mem);
    const char *charset = g_mime_content_type_get_parameter(
        g_mime_object_get_content_type(GMIME_OBJECT(part)), "charset");
    if (charset && g_ascii_strcasecmp(charset, "utf-8") != 0 &&
        g_ascii_strcasecmp(charset, "us-ascii") != 0) {
        GMimeFilter *f = g_mime_filter_charset_new(charset, "UTF-8");
        if (f) { /* an unknown charset: kept as is, then made valid UTF-8 */
            g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), f);
            g_object_unref(f);
        }
    }
    g_mime_data_wrapper_write_to_stream(content, filtered);
    g_mime_stream_flush(filtered);
    GByteArray *bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
    char *out = s_clean((const char *)bytes->data, bytes->len, AIN__MIME_TEXT_MAX);
    g_object_unref(filtered);
    g_object_unref(mem);
    return out;
}

static int64_t s_size_of(GMimePart *part)
{
    GMimeDataWrapper *content = g_mime_part_get_content(part);
    if (!content)
        return 0;
    GMimeStream *null = g_mime_stream_null_new();
    ssize_t n = g_mime_data_wrapper_write_to_stream(content, null);
    g_object_unref(null);
    return n > 0 ? (int64_t)n : 0;
}

static void s_add_att(ain__mime_t *m, const char *path, GMimeObject *obj, const char *filename,
                      int64_t size)
{
    if (m->natt >= AIN__MIME_ATT_MAX) {
        m->natt_dropped++;
        return;
    }
    ain__mime_att_t *a = &m->att[m->natt++];
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    a->part = ain_strdup(path);
    a->filename = filename ? s_clean(filename, strlen(filename), 1024) : NULL;
    a->mime_type = ct ? s_glib_dup(g_mime_content_type_get_mime_type(ct))
                      : ain_strdup("application/octet-stream");
    const char *cid = g_mime_object_get_content_id(obj);
    a->content_id = cid ? s_clean(cid, strlen(cid), 1024) : NULL;
    a->size = size;
    const char *disp = g_mime_object_get_disposition(obj);
    a->is_inline = disp ? g_ascii_strcasecmp(disp, "inline") == 0 : cid != NULL;
}

static void s_walk(ain__mime_t *m, GMimeObject *obj, const char *path, int depth)
{
    if (!obj || depth > AIN__MIME_DEPTH_MAX)
        return;
    char child[128];
    if (GMIME_IS_MULTIPART(obj)) {
        int n = g_mime_multipart_get_count(GMIME_MULTIPART(obj));
        for (int i = 0; i < n; i++) {
            snprintf(child, sizeof child, "%s%s%d", path, *path ? "." : "", i);
            s_walk(m, g_mime_multipart_get_part(GMIME_MULTIPART(obj), i), child, depth + 1);
        }
        return;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) { /* a forwarded message: one attachment */
        const char *fn = g_mime_object_get_content_disposition_parameter(obj, "filename");
        s_add_att(m, path, obj, fn, 0);
        return;
    }
    if (!GMIME_IS_PART(obj))
        return;
    GMimePart *part = GMIME_PART(obj);
    const char *filename = g_mime_part_get_filename(part);
    const char *disp = g_mime_object_get_disposition(obj);
    bool attachment = disp && g_ascii_strcasecmp(disp, "attachment") == 0;
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    if (!filename && !attachment && ct && g_mime_content_type_is_type(ct, "text", "html") &&
        !m->html) {
        m->html = s_text_of(part);
        return;
    }
    if (!filename && !attachment && ct && g_mime_content_type_is_type(ct, "text", "plain") &&
        !m->text) {
        m->text = s_text_of(part);
        return;
    }
    if (!filename && !attachment && ct && g_mime_content_type_is_type(ct, "text", "*"))
        return; /* a second text part of an alternative: not a file */
    s_add_att(m, path, obj, filename, s_size_of(part));
}

static char *s_header(GMimeObject *obj, const char *name)
{
    const char *v = g_mime_object_get_header(obj, name);
    return v ? ain__mime_decode_text(v) : NULL;
}

int ain__mime_parse(const char *raw, size_t len, ain__mime_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_once(&s_once, s_init);
    GMimeStream *stream = g_mime_stream_mem_new_with_buffer(raw, len);
    GMimeParser *parser = g_mime_parser_new_with_stream(stream);
    GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);
    g_object_unref(parser);
    g_object_unref(stream);
    if (!msg)
        return -1;
    GMimeObject *top = GMIME_OBJECT(msg);
    out->subject = s_header(top, "Subject");
    const char *from = g_mime_object_get_header(top, "From");
    ain__mime_first(from, &out->from_name, &out->from_addr);
    out->to = ain__mime_addresses(g_mime_object_get_header(top, "To"));
    out->cc = ain__mime_addresses(g_mime_object_get_header(top, "Cc"));
    out->bcc = ain__mime_addresses(g_mime_object_get_header(top, "Bcc"));
    out->message_id = s_header(top, "Message-ID");
    out->in_reply_to = s_header(top, "In-Reply-To");
    out->references = s_header(top, "References");
    out->content_type = s_header(top, "Content-Type");
    s_walk(out, g_mime_message_get_mime_part(msg), "", 0);
    g_object_unref(msg);
    return 0;
}

void ain__mime_clear(ain__mime_t *m)
{
    free(m->html);
    free(m->text);
    for (size_t i = 0; i < m->natt; i++) {
        free(m->att[i].part);
        free(m->att[i].filename);
        free(m->att[i].mime_type);
        free(m->att[i].content_id);
    }
    free(m->subject);
    free(m->from_name);
    free(m->from_addr);
    free(m->to);
    free(m->cc);
    free(m->bcc);
    free(m->message_id);
    free(m->in_reply_to);
    free(m->references);
    free(m->content_type);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ selftest */

/* The shapes tools/fakes renders (ainfake/mailbox.py): quoted-printable text in a legacy
 * charset, alternative, related HTML with an inline cid: image, mixed with attachments whose
 * names are RFC 2231 encoded; headers with RFC 2047 words. */
static const char s_plain[] =
    "From: =?iso-8859-1?q?Ren=E9e_Dupr=E9?= <renee@example.test>\r\n"
    "To: =?utf-8?b?0JDQu9C10LrRgdC10Lk=?= <alexei@example.test>, bob@example.test\r\n"
    "Subject: =?utf-8?q?Caf=C3=A9_=F0=9F=98=80?= and more\r\n"
    "Message-ID: <m1@example.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=\"iso-8859-1\"\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Voil=E0 le caf=E9.\r\n";

static const char s_related[] = "From: Zo\xc3\xab <zoe@example.test>\r\n"
                                "Subject: =?utf-8?b?5pel5pys6Kqe?=\r\n"
                                "In-Reply-To: <m1@example.test>\r\n"
                                "References: <m0@example.test> <m1@example.test>\r\n"
                                "MIME-Version: 1.0\r\n"
                                "Content-Type: multipart/alternative; boundary=\"A\"\r\n"
                                "\r\n"
                                "--A\r\n"
                                "Content-Type: text/plain; charset=utf-8\r\n"
                                "Content-Transfer-Encoding: base64\r\n"
                                "\r\n"
                                "SGVsbG8gd29ybGQg4pyT\r\n"
                                "--A\r\n"
                                "Content-Type: multipart/related; boundary=\"R\"\r\n"
                                "\r\n"
                                "--R\r\n"
                                "Content-Type: text/html; charset=koi8-r\r\n"
                                "Content-Transfer-Encoding: 8bit\r\n"
                                "\r\n"
                                "<p>\xf0\xd2\xc9\xd7\xc5\xd4 <img src=\"cid:logo@x\"></p>\r\n"
                                "--R\r\n"
                                "Content-Type: image/png\r\n"
                                "Content-Transfer-Encoding: base64\r\n"
                                "Content-ID: <logo@x>\r\n"
                                "Content-Disposition: inline; filename=\"logo.png\"\r\n"
                                "\r\n"
                                "iVBORw0KGgo=\r\n"
                                "--R--\r\n"
                                "--A--\r\n";

static const char s_mixed[] =
    "From: plain@example.test\r\n"
    "Subject: files\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"M\"\r\n"
    "\r\n"
    "--M\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "see attached\r\n"
    "--M\r\n"
    "Content-Type: application/pdf\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf\r\n"
    "\r\n"
    "JVBERi0xLjQK\r\n"
    "--M\r\n"
    "Content-Type: text/csv; charset=utf-8\r\n"
    "Content-Disposition: attachment; filename=\"data.csv\"\r\n"
    "\r\n"
    "a,b\r\n1,2\r\n"
    "--M--\r\n";

#define S_CHECK(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "mime: %s:%d: %s\n", __FILE__, __LINE__, #cond);                       \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static bool s_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

int ain__mime_test(bool verbose)
{
    ain__mime_t m;
    S_CHECK(ain__mime_parse(s_plain, sizeof s_plain - 1, &m) == 0);
    if (verbose)
        printf("plain: subject=%s from=%s <%s> to=%s text=%s\n", m.subject, m.from_name,
               m.from_addr, m.to, m.text);
    S_CHECK(s_eq(m.subject, "Caf\xc3\xa9 \xf0\x9f\x98\x80 and more"));
    S_CHECK(s_eq(m.from_name, "Ren\xc3\xa9\x65 Dupr\xc3\xa9"));
    S_CHECK(s_eq(m.from_addr, "renee@example.test"));
    S_CHECK(m.to && strstr(m.to, "\xd0\x90\xd0\xbb\xd0\xb5\xd0\xba\xd1\x81\xd0\xb5\xd0\xb9") &&
            strstr(m.to, "bob@example.test"));
    S_CHECK(s_eq(m.text, "Voil\xc3\xa0 le caf\xc3\xa9.\r\n") ||
            s_eq(m.text, "Voil\xc3\xa0 le caf\xc3\xa9.\n"));
    S_CHECK(!m.html && m.natt == 0);
    S_CHECK(s_eq(m.message_id, "<m1@example.test>") || s_eq(m.message_id, "m1@example.test"));
    ain__mime_clear(&m);

    S_CHECK(ain__mime_parse(s_related, sizeof s_related - 1, &m) == 0);
    if (verbose)
        printf("related: subject=%s html=%s natt=%zu\n", m.subject, m.html, m.natt);
    S_CHECK(s_eq(m.subject, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"));
    S_CHECK(s_eq(m.from_name, "Zo\xc3\xab"));
    S_CHECK(m.text && strstr(m.text, "Hello world \xe2\x9c\x93"));
    /* KOI8-R "Привет" converted to UTF-8 */
    S_CHECK(m.html && strstr(m.html, "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"));
    S_CHECK(m.natt == 1);
    S_CHECK(s_eq(m.att[0].content_id, "logo@x") && m.att[0].is_inline);
    S_CHECK(s_eq(m.att[0].mime_type, "image/png") && s_eq(m.att[0].filename, "logo.png"));
    S_CHECK(m.att[0].size == 8 && s_eq(m.att[0].part, "1.1"));
    S_CHECK(m.references && strstr(m.references, "<m0@example.test>"));
    ain__mime_clear(&m);

    S_CHECK(ain__mime_parse(s_mixed, sizeof s_mixed - 1, &m) == 0);
    S_CHECK(s_eq(m.text, "see attached") || (m.text && strncmp(m.text, "see attached", 12) == 0));
    S_CHECK(m.natt == 2);
    S_CHECK(s_eq(m.att[0].filename, "r\xc3\xa9sum\xc3\xa9.pdf") && !m.att[0].is_inline);
    S_CHECK(m.att[0].size == 9 && s_eq(m.att[0].mime_type, "application/pdf"));
    S_CHECK(s_eq(m.att[1].filename, "data.csv") && s_eq(m.att[1].mime_type, "text/csv"));
    ain__mime_clear(&m);

    /* Garbage is not a crash; base64url both alphabets, with and without padding. */
    ain__mime_parse("", 0, &m);
    ain__mime_clear(&m);
    char *out = NULL;
    size_t len = 0;
    S_CHECK(ain__mime_b64url("aGk_-w==", 8, &out, &len) == 0 && len == 4 &&
            memcmp(out, "hi?\xfb", 4) == 0);
    free(out);
    S_CHECK(ain__mime_b64url("aGk", 3, &out, &len) == 0 && len == 2 && memcmp(out, "hi", 2) == 0);
    free(out);
    S_CHECK(ain__mime_b64url("a b", 3, &out, &len) == -1);
    char *a = ain__mime_addresses("=?utf-8?q?Zo=C3=AB?= <z@x.test>");
    char *b = ain__mime_addresses("Zo\xc3\xab <z@x.test>");
    S_CHECK(s_eq(a, b)); /* raw and Gmail-decoded headers are stored alike */
    free(a);
    free(b);
    return 0;
}
