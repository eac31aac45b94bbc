/* keys.h: cache keys of the mail store's views, and what a change
 * invalidates.
 *
 * A key names one view of one user's mail, kind first so that a prefix
 * selects every variant of a view (all accounts, cursors and page sizes):
 *   list:l:<label>:<account>:<cursor>:<limit>   threads carrying a label
 *   list:r:<role>:<account>:<cursor>:<limit>    threads in a folder role
 *   list:archive:<account>:<cursor>:<limit>     threads out of inbox/trash/spam
 *   thread:<thread>:<account>:<bodies>          a thread with its messages
 *   msg:<message>:<account>                      one message with its content
 *   counts:<account>                             per-folder totals
 * <account> is the account id or "*" (every account: a unified view).
 * The user is not part of the key: every cache layer keeps keys per user.
 *
 * Provider ids become key parts only if they are printable and contain no
 * ':' (no key of one view can be a prefix of another); anything else is
 * refused as INVALID by the caller. Pure logic.
 */
#ifndef AIN_ACTORS_CACHE_KEYS_H
#define AIN_ACTORS_CACHE_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AIN_KEY_MAX      512
#define AIN_KEY_PART_MAX 200

/* True if `part` (len bytes) may appear in a key: 1..200 printable ASCII
 * characters, none of them ':' or a space. */
bool ain_key_part_ok(const char *part, size_t len);

/* Key builders: write the key with a NUL into buf (AIN_KEY_MAX bytes) and
 * return its length, or -1 if a part is not acceptable. `account` 0 means
 * every account. `cursor` may be NULL (the first page). */
int ain_key_list_label(char *buf, const char *label, uint64_t account, const char *cursor,
                       int limit);
int ain_key_list_role(char *buf, const char *role, uint64_t account, const char *cursor, int limit);
int ain_key_list_archive(char *buf, uint64_t account, const char *cursor, int limit);
int ain_key_thread(char *buf, const char *thread, uint64_t account, bool bodies);
int ain_key_message(char *buf, const char *message, uint64_t account);
int ain_key_counts(char *buf, uint64_t account);

/* The key prefixes a change invalidates, one at a time: `kind` and `ref`
 * as ain_mail_apply reports them ('label' INBOX, 'role' inbox, 'thread'
 * t1, 'message' m1, 'counts'). Writes the prefix into buf and returns its
 * length, or -1 for an unknown kind or an unusable ref. Kind 'archive'
 * (ref '') names the archive list, 'counts' (ref '') the counts. */
int ain_key_prefix(char *buf, const char *kind, const char *ref);
#define AIN_KEY_ARCHIVE_PREFIX "list:archive:"

int ain_keys_test(bool verbose);

#endif
