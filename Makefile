# The one place that knows where aicontainers installs. DESTDIR-aware:
#   make && make install DESTDIR=/tmp/stage
PREFIX        ?= /usr
BINDIR        ?= $(PREFIX)/bin
LIBDIR        ?= $(PREFIX)/lib
GENERATORDIR  ?= $(LIBDIR)/systemd/system-generators
TMPFILESDIR   ?= $(LIBDIR)/tmpfiles.d
UNITDIR       ?= $(LIBDIR)/systemd/system
MANDIR        ?= $(PREFIX)/share/man
DOCDIR        ?= $(PREFIX)/share/doc/aicontainers
SYSCONFDIR    ?= /etc
CARGO         ?= cargo
CARGOFLAGS    ?= --release --locked

# The generator writes this path into the units of invalid services.
export AICONTAINERS_AICTL_PATH = $(BINDIR)/aictl

RELEASE = target/release

.PHONY: all build install uninstall check test e2e demo bench clean

all: build

build:
	$(CARGO) build $(CARGOFLAGS) --bin aicontainers-generator --bin aictl

install: build
	install -Dm755 $(RELEASE)/aicontainers-generator $(DESTDIR)$(GENERATORDIR)/aicontainers-generator
	install -Dm755 $(RELEASE)/aictl $(DESTDIR)$(BINDIR)/aictl
	install -Dm644 units/aicontainers.tmpfiles $(DESTDIR)$(TMPFILESDIR)/aicontainers.conf
	install -dm755 $(DESTDIR)$(UNITDIR)
	sed 's|@AICTL@|$(BINDIR)/aictl|' units/aicontainers-model@.service > $(DESTDIR)$(UNITDIR)/aicontainers-model@.service
	chmod 644 $(DESTDIR)$(UNITDIR)/aicontainers-model@.service
	install -dm755 $(DESTDIR)$(SYSCONFDIR)/aicontainers
	install -Dm644 man/aicontainers.toml.5 $(DESTDIR)$(MANDIR)/man5/aicontainers.toml.5
	install -Dm644 man/aictl.1 $(DESTDIR)$(MANDIR)/man1/aictl.1
	install -Dm644 docs/models.md $(DESTDIR)$(DOCDIR)/models.md
	install -Dm644 man/aicontainers-generator.8 $(DESTDIR)$(MANDIR)/man8/aicontainers-generator.8
	install -dm755 $(DESTDIR)$(DOCDIR)/examples
	cp -r examples/. $(DESTDIR)$(DOCDIR)/examples/

uninstall:
	rm -f $(DESTDIR)$(GENERATORDIR)/aicontainers-generator $(DESTDIR)$(BINDIR)/aictl \
	      $(DESTDIR)$(TMPFILESDIR)/aicontainers.conf $(DESTDIR)$(UNITDIR)/aicontainers-model@.service \
	      $(DESTDIR)$(MANDIR)/man5/aicontainers.toml.5 $(DESTDIR)$(MANDIR)/man1/aictl.1 \
	      $(DESTDIR)$(MANDIR)/man8/aicontainers-generator.8
	rm -rf $(DESTDIR)$(DOCDIR)

# Unit and golden tests (no VM).
check:
	$(CARGO) test --workspace --locked

# Everything, the way CI runs it (see README.md).
test:
	tests/run-all

e2e:
	tests/e2e/run

demo:
	tests/demo

bench:
	tests/bench/generator

clean:
	$(CARGO) clean
