# tests/fuzz/Makefile.frag — fuzzing; included by Makefile.in.  See tests/fuzz/README.md.
#
#   make fuzz          build the libFuzzer harnesses (clang) and run each for
#                      FUZZ_SECONDS (60) on its seed corpus; then replay the
#                      regression inputs.  FUZZ_TARGETS="ws_frame store" picks some.
#   make fuzz-ci       the same with FUZZ_CI_SECONDS (25) per target: CI's
#                      bounded pass, part of `make check` (about 3.5 minutes).
#   make fuzz-regress  no clang needed: the harnesses built with $(CC) and
#                      ASan+UBSan around a plain main() (standalone.c) replay
#                      every regression input and every seed once.
#   make fuzz-build    only build the libFuzzer binaries ($(B)/fuzz/<target>).

FUZZ_CC       ?= clang
FUZZ_SECONDS  ?= 60
FUZZ_CI_SECONDS ?= 25
FUZZ_TARGETS  ?= ws_frame ws_deflate publish_json values api_request link store token
FUZZ_ALL      = ws_frame ws_deflate publish_json values api_request link store token
FUZZ_SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   = -std=gnu11 -g -O1 -Wall -Wextra -Werror $(FUZZ_SANFLAGS)

FUZZ_WS_SRC           = mod_push/ws_frame.c mod_push/utf8.c mod_push/ws_deflate.c
FUZZ_SRC_ws_frame     = $(FUZZ_WS_SRC)
FUZZ_SRC_ws_deflate   = $(FUZZ_WS_SRC)
FUZZ_SRC_publish_json = $(PROTO_SRC)
FUZZ_SRC_values       = $(PROTO_SRC)
FUZZ_SRC_api_request  = $(PROTO_SRC) $(BROKER_SRC)
FUZZ_SRC_link         = $(PROTO_SRC) $(BROKER_SRC)
FUZZ_SRC_store        = $(PROTO_SRC) $(BROKER_SRC)
FUZZ_SRC_token        = $(PROTO_SRC)
# links.c talks to a ZeroMQ socket: these calls go to fuzz_link.c instead (see there)
FUZZ_LDFLAGS_link     = -Wl,--wrap=push_frames_recv,--wrap=push_frames_close \
                        -Wl,--wrap=push_send_frames,--wrap=reply_send \
                        -Wl,--wrap=clock_mono_us,--wrap=clock_real_us \
                        -Wl,--wrap=zmq_socket,--wrap=zmq_setsockopt,--wrap=zmq_bind,--wrap=zmq_close

.PHONY: fuzz fuzz-ci fuzz-build fuzz-regress

# libFuzzer objects: the project's sources instrumented for coverage
$(B)/fuzz/obj/%.o: %.c $(HDRS) tests/fuzz/fuzz_common.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(CPPFLAGS) -c $< -o $@

# the standalone replayers reuse the ASan build's objects ($(B)/asan, as unit-asan)
$(foreach t,$(FUZZ_ALL),$(B)/asan/tests/fuzz/fuzz_$(t).o): tests/fuzz/fuzz_common.h

define FUZZ_TARGET_RULES
$(B)/fuzz/$(1): $(B)/fuzz/obj/tests/fuzz/fuzz_$(1).o $(call obj,fuzz/obj,$(FUZZ_SRC_$(1)))
	@mkdir -p $$(dir $$@)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) -fsanitize=fuzzer -o $$@ $$^ $$(FUZZ_LDFLAGS_$(1)) $$(LIBS)
$(B)/fuzz/replay-$(1): $(B)/asan/tests/fuzz/fuzz_$(1).o $(B)/asan/tests/fuzz/standalone.o $(call obj,asan,$(FUZZ_SRC_$(1)))
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$(SAN) -o $$@ $$^ $$(FUZZ_LDFLAGS_$(1)) $$(LIBS)
endef
$(foreach t,$(FUZZ_ALL),$(eval $(call FUZZ_TARGET_RULES,$(t))))

fuzz-build: $(addprefix $(B)/fuzz/,$(FUZZ_TARGETS))

fuzz: fuzz-build
	FUZZ_BUILD=$(B)/fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) sh tools/fuzz.sh run $(FUZZ_TARGETS)

fuzz-ci: fuzz-build
	FUZZ_BUILD=$(B)/fuzz FUZZ_SECONDS=$(FUZZ_CI_SECONDS) sh tools/fuzz.sh run $(FUZZ_TARGETS)

fuzz-regress: $(addprefix $(B)/fuzz/replay-,$(FUZZ_TARGETS))
	FUZZ_BUILD=$(B)/fuzz sh tools/fuzz.sh regress $(FUZZ_TARGETS)
