/* table.c: plain-text tables for ainbox-admin (see table.h).
 *
 * Rows are kept whole until printing, because a column's width is known
 * only once every cell is in. Widths count UTF-8 characters, not bytes, so
 * a non-ASCII name does not shift the columns after it.
 */
#include "tools/admin/table.h"

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"

#define S_GAP 2 /* spaces between columns */

typedef struct {
    char **cells;    /* ncols entries; NULL = not filled */
    const char *key; /* the cell sorted on, set by ain__table_sort */
} s_row_t;

struct _ain__table_t {
    size_t ncols;
    s_row_t header;
    s_row_t *rows;
    size_t nrows, cap;
    size_t next_cell; /* of the last row */
};

/* Length of the UTF-8 sequence at `p` if it is valid and printable, else
 * 0. C1 controls (U+0080..U+009F) count as unprintable: some terminals obey
 * them. Overlong forms are not refused: they print as something harmless. */
static size_t s_utf8_len(const unsigned char *p)
{
    size_t n = *p >= 0xc2 && *p <= 0xdf   ? 2
               : *p >= 0xe0 && *p <= 0xef ? 3
               : *p >= 0xf0 && *p <= 0xf4 ? 4
                                          : 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n == 2 && p[0] == 0xc2 && p[1] < 0xa0 ? 0 : n;
}

char *ain__table_printable(const char *text)
{
    const unsigned char *in = (const unsigned char *)(text ? text : "-");
    char *copy = ain_malloc(strlen((const char *)in) + 1), *out = copy;
    while (*in) {
        size_t n = *in >= 0x80 ? s_utf8_len(in) : *in < 0x20 || *in == 0x7f ? 0 : 1;
        if (n == 0) {
            *out++ = '?';
            in++;
        } else {
            memcpy(out, in, n);
            out += n;
            in += n;
        }
    }
    *out = '\0';
    return copy;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t s_width(const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        n += (*p & 0xc0) != 0x80;
    return n;
}

ain__table_t *ain__table_new(const char *headers)
{
    ain__table_t *self = AIN_NEW(ain__table_t);
    char *words = ain_strdup(headers), *save = NULL;
    for (char *w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save))
        self->ncols++;
    assert(self->ncols > 0);
    self->header.cells = ain_calloc(self->ncols, sizeof(char *));
    strcpy(words, headers);
    size_t col = 0;
    for (char *w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save))
        self->header.cells[col++] = ain_strdup(w);
    free(words);
    return self;
}

static void s_row_free(s_row_t *row, size_t ncols)
{
    for (size_t c = 0; c < ncols; c++)
        free(row->cells[c]);
    free(row->cells);
}

void ain__table_destroy(ain__table_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain__table_t *self = *self_p;
    s_row_free(&self->header, self->ncols);
    for (size_t r = 0; r < self->nrows; r++)
        s_row_free(&self->rows[r], self->ncols);
    free(self->rows);
    free(self);
    *self_p = NULL;
}

void ain__table_row(ain__table_t *self)
{
    if (self->nrows == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 16;
        self->rows = ain_realloc(self->rows, self->cap * sizeof(s_row_t));
    }
    s_row_t *row = &self->rows[self->nrows++];
    row->cells = ain_calloc(self->ncols, sizeof(char *));
    row->key = NULL;
    self->next_cell = 0;
}

void ain__table_cell(ain__table_t *self, const char *text)
{
    assert(self->nrows > 0 && self->next_cell < self->ncols);
    if (self->nrows == 0 || self->next_cell >= self->ncols)
        return;
    self->rows[self->nrows - 1].cells[self->next_cell++] = ain__table_printable(text);
}

void ain__table_cellf(ain__table_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fprintf(stderr, "ainbox-admin: out of memory\n");
        abort();
    }
    ain__table_cell(self, text);
    free(text);
}

size_t ain__table_rows(const ain__table_t *self)
{
    return self->nrows;
}

static const char *s_text(const s_row_t *row, size_t col)
{
    return row->cells[col] ? row->cells[col] : "";
}

static int s_compare(const void *a, const void *b)
{
    const s_row_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(s_text(x, 0), s_text(y, 0));
}

void ain__table_sort(ain__table_t *self, size_t col)
{
    assert(col < self->ncols);
    if (col >= self->ncols)
        return;
    for (size_t r = 0; r < self->nrows; r++)
        self->rows[r].key = s_text(&self->rows[r], col);
    if (self->nrows > 1)
        qsort(self->rows, self->nrows, sizeof(s_row_t), s_compare);
}

static void s_print_row(const ain__table_t *self, const s_row_t *row, const size_t *width,
                        FILE *out)
{
    for (size_t c = 0; c < self->ncols; c++) {
        const char *text = s_text(row, c);
        fputs(text, out);
        if (c + 1 < self->ncols)
            fprintf(out, "%*s", (int)(width[c] - s_width(text) + S_GAP), "");
    }
    fputc('\n', out);
}

void ain__table_print(const ain__table_t *self, FILE *out)
{
    size_t *width = ain_calloc(self->ncols, sizeof(size_t));
    for (size_t c = 0; c < self->ncols; c++) {
        width[c] = s_width(s_text(&self->header, c));
        for (size_t r = 0; r < self->nrows; r++) {
            size_t w = s_width(s_text(&self->rows[r], c));
            width[c] = w > width[c] ? w : width[c];
        }
    }
    s_print_row(self, &self->header, width, out);
    for (size_t r = 0; r < self->nrows; r++)
        s_print_row(self, &self->rows[r], width, out);
    if (self->nrows == 0)
        fputs("(none)\n", out);
    free(width);
}
