/* Wall-clock time in Unix milliseconds, the unit of every timestamp tokend
 * stores or sends. */
#ifndef TOKEND_TIME_H
#define TOKEND_TIME_H

#include <stdint.h>
#include <time.h>

static inline int64_t tokend_now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
