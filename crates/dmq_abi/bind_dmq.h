/* The stock dmq module's ABI that htable, dmq_usrloc, dialog and presence
 * compile against (bind_dmq, its node and peer structs): what dmq_abi
 * binds, with kamailio-sys's include directories and the core's defines.
 * Only our own file: the header named here comes from the fetched Kamailio
 * source tree (kamailio-headers/fetch.sh), never from this repository. */
#include "modules/dmq/bind_dmq.h"
