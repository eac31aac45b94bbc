/* table.h: plain-text tables for ainbox-admin.
 *
 * Left-aligned columns sized to their widest cell, a header row in
 * capitals, two spaces between columns, "(none)" under the header when
 * there are no rows. Cells are copied; control characters in them (which
 * come from other processes) and invalid UTF-8 are shown as '?', so a
 * hostile name cannot drive the terminal. Internal to tools/admin.
 */
#ifndef AIN_TOOLS_ADMIN_TABLE_H
#define AIN_TOOLS_ADMIN_TABLE_H

#include <stddef.h>
#include <stdio.h>

typedef struct _ain__table_t ain__table_t;

/* A table whose column headers are the space-separated words of `headers`
 * ("NAME KIND WORKERS"; copied). Returns a table the caller owns. */
ain__table_t *ain__table_new(const char *headers);

/* Frees the table and nulls the caller's pointer; safe twice. */
void ain__table_destroy(ain__table_t **self_p);

/* Starts a new row; its cells are then added left to right. Cells a row
 * leaves out print empty. */
void ain__table_row(ain__table_t *self);

/* Adds the next cell of the current row (text copied; NULL prints "-").
 * Cells beyond the column count are ignored: a caller's bug, asserted in
 * debug builds. */
void ain__table_cell(ain__table_t *self, const char *text);

/* As ain__table_cell, with printf formatting. */
void ain__table_cellf(ain__table_t *self, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Number of rows added (the header not counted). */
size_t ain__table_rows(const ain__table_t *self);

/* Sorts the rows by the text of column `col`, then by the first column;
 * stable enough for display (equal rows keep no particular order). */
void ain__table_sort(ain__table_t *self, size_t col);

/* Writes the table to `out`. */
void ain__table_print(const ain__table_t *self, FILE *out);

/* A copy of `text` (NULL: "-") with control characters and invalid UTF-8
 * replaced by '?', for printing text another process sent. The caller
 * frees it. */
char *ain__table_printable(const char *text);

#endif
