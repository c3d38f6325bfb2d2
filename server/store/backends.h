/* backends: the store backends this build has, as one list. Each line
 * X(name) names a backend whose object is store_<name>_backend (defined
 * by its folder, store/<name>/), and whose URL scheme is usually name.
 * The registry (store.c) is generated from it; the first is the backend a
 * bare path (no "scheme:") selects. Adding a backend is one line here,
 * its folder, and its sources in CMakeLists.txt.
 *
 * Declarations only, with an incomplete type, so that this header needs
 * no other: the registry and the backends both include it, and neither
 * includes the other. */
#ifndef TOKEND_STORE_BACKENDS_H
#define TOKEND_STORE_BACKENDS_H

#define STORE_BACKENDS(X) X(sqlite) X(postgresql) X(postgres)

struct store_backend;

#define X(name) extern const struct store_backend store_##name##_backend;
STORE_BACKENDS(X)
#undef X

#endif
