# Third-party libraries, all from Debian 12 packages (deploy/setup-debian.sh).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)
pkg_check_modules(CZMQ REQUIRED IMPORTED_TARGET libczmq)
pkg_check_modules(MSGPACK REQUIRED IMPORTED_TARGET msgpack)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(PQ REQUIRED IMPORTED_TARGET libpq)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)
pkg_check_modules(GMIME REQUIRED IMPORTED_TARGET gmime-3.0)
# OpenSSL's libcrypto (libssl-dev): random bytes, SHA-256, HMAC, HKDF and
# AES-256-GCM for tokens and secrets at rest (runtime/crypto.c). Only
# libcrypto: these are primitives, not TLS.
pkg_check_modules(CRYPTO REQUIRED IMPORTED_TARGET libcrypto)
# Gumbo (libgumbo-dev): the HTML5 parser under the mail HTML sanitiser (mail/). Parsing mail
# HTML the way a browser does is the whole point of a sanitiser, and an HTML5-conformant parser
# is not something to write by hand.
pkg_check_modules(GUMBO REQUIRED IMPORTED_TARGET gumbo)

# Debian's civetweb ships no pkg-config file and a broken CMake package
# (it names /usr/bin/civetweb from another package), so find it by hand.
find_path(CIVETWEB_INCLUDE_DIR civetweb.h REQUIRED)
find_library(CIVETWEB_LIBRARY civetweb REQUIRED)
add_library(ain_civetweb INTERFACE)
target_include_directories(ain_civetweb SYSTEM INTERFACE ${CIVETWEB_INCLUDE_DIR})
target_link_libraries(ain_civetweb INTERFACE ${CIVETWEB_LIBRARY} Threads::Threads)
