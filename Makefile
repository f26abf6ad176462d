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
LIBEXECDIR    ?= $(PREFIX)/libexec
SYSTEMUNITDIR ?= $(LIBDIR)/systemd/system
SYSUSERSDIR   ?= $(LIBDIR)/sysusers.d
PRESETDIR     ?= $(LIBDIR)/systemd/system-preset
DATADIR       ?= $(PREFIX)/share
DBUSSYSTEMDIR ?= $(DATADIR)/dbus-1/system.d
DBUSIFACEDIR  ?= $(DATADIR)/dbus-1/interfaces
POLKITDIR     ?= $(DATADIR)/polkit-1
BASHCOMPDIR   ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR    ?= $(DATADIR)/zsh/vendor-completions
FISHCOMPDIR   ?= $(DATADIR)/fish/vendor_completions.d
CARGO         ?= cargo
CARGOFLAGS    ?= --release --locked

# The generator writes this path into the units of invalid services.
export AICONTAINERS_AICTL_PATH = $(BINDIR)/aictl

RELEASE = target/release

.PHONY: all build install uninstall deb rpm check test e2e demo bench clean

all: build

build:
	$(CARGO) build $(CARGOFLAGS) --bin aicontainers-generator --bin aictl --bin aicontainersd

install: build
	install -Dm755 $(RELEASE)/aicontainers-generator $(DESTDIR)$(GENERATORDIR)/aicontainers-generator
	install -Dm755 $(RELEASE)/aictl $(DESTDIR)$(BINDIR)/aictl
	install -Dm644 units/aicontainers.tmpfiles $(DESTDIR)$(TMPFILESDIR)/aicontainers.conf
	install -dm755 $(DESTDIR)$(UNITDIR)
	sed 's|@AICTL@|$(BINDIR)/aictl|' units/aicontainers-model@.service > $(DESTDIR)$(UNITDIR)/aicontainers-model@.service
	chmod 644 $(DESTDIR)$(UNITDIR)/aicontainers-model@.service
	install -m644 units/aicontainers-agents.slice $(DESTDIR)$(UNITDIR)/aicontainers-agents.slice
	install -dm755 $(DESTDIR)$(SYSCONFDIR)/aicontainers
	install -Dm644 man/aicontainers.toml.5 $(DESTDIR)$(MANDIR)/man5/aicontainers.toml.5
	install -Dm644 man/aictl.1 $(DESTDIR)$(MANDIR)/man1/aictl.1
	install -Dm644 man/aicontainers-preflight.7 $(DESTDIR)$(MANDIR)/man7/aicontainers-preflight.7
	install -Dm644 docs/models.md $(DESTDIR)$(DOCDIR)/models.md
	install -Dm644 docs/sandbox.md $(DESTDIR)$(DOCDIR)/sandbox.md
	install -Dm644 docs/scan.md $(DESTDIR)$(DOCDIR)/scan.md
	install -Dm644 man/aicontainers-generator.8 $(DESTDIR)$(MANDIR)/man8/aicontainers-generator.8
	install -dm755 $(DESTDIR)$(DOCDIR)/examples
	cp -r examples/. $(DESTDIR)$(DOCDIR)/examples/
	# The node agent (docs/agent.md).
	install -Dm755 $(RELEASE)/aicontainersd $(DESTDIR)$(LIBEXECDIR)/aicontainersd
	install -dm755 $(DESTDIR)$(SYSTEMUNITDIR)
	sed 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' units/aicontainersd.service.in > $(DESTDIR)$(SYSTEMUNITDIR)/aicontainersd.service
	chmod 644 $(DESTDIR)$(SYSTEMUNITDIR)/aicontainersd.service
	sed 's|@BINDIR@|$(BINDIR)|g' units/aicontainers-preflight.service.in > $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-preflight.service
	chmod 644 $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-preflight.service
	sed 's|@BINDIR@|$(BINDIR)|g' units/aicontainers-scan.service.in > $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-scan.service
	chmod 644 $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-scan.service
	sed 's|@BINDIR@|$(BINDIR)|g' units/aicontainers-scan@.service.in > $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-scan@.service
	chmod 644 $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-scan@.service
	install -m644 units/aicontainers-scan.timer $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-scan.timer
	sed 's|@BINDIR@|$(BINDIR)|g' units/aicontainers-sandbox.service.in > $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-sandbox.service
	chmod 644 $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-sandbox.service
	install -Dm644 units/aicontainers.sysusers $(DESTDIR)$(SYSUSERSDIR)/aicontainers.conf
	install -Dm644 units/50-aicontainers.preset $(DESTDIR)$(PRESETDIR)/50-aicontainers.preset
	install -Dm644 agent/data/org.aicontainers.Agent1.conf $(DESTDIR)$(DBUSSYSTEMDIR)/org.aicontainers.Agent1.conf
	install -Dm644 agent/data/org.aicontainers.policy $(DESTDIR)$(POLKITDIR)/actions/org.aicontainers.policy
	install -Dm644 agent/data/50-aicontainers.rules $(DESTDIR)$(POLKITDIR)/rules.d/50-aicontainers.rules
	install -Dm644 -t $(DESTDIR)$(DBUSIFACEDIR) agent/interfaces/org.aicontainers.Manager1.xml agent/interfaces/org.aicontainers.Service1.xml \
	  agent/interfaces/org.aicontainers.Models1.xml agent/interfaces/org.aicontainers.Job1.xml agent/interfaces/org.aicontainers.Image1.xml
	install -Dm644 man/aicontainersd.8 $(DESTDIR)$(MANDIR)/man8/aicontainersd.8
	install -dm755 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	$(RELEASE)/aictl completions bash > $(DESTDIR)$(BASHCOMPDIR)/aictl
	$(RELEASE)/aictl completions zsh > $(DESTDIR)$(ZSHCOMPDIR)/_aictl
	$(RELEASE)/aictl completions fish > $(DESTDIR)$(FISHCOMPDIR)/aictl.fish

uninstall:
	rm -f $(DESTDIR)$(GENERATORDIR)/aicontainers-generator $(DESTDIR)$(BINDIR)/aictl \
	      $(DESTDIR)$(TMPFILESDIR)/aicontainers.conf $(DESTDIR)$(UNITDIR)/aicontainers-model@.service \
	      $(DESTDIR)$(UNITDIR)/aicontainers-agents.slice \
	      $(DESTDIR)$(MANDIR)/man5/aicontainers.toml.5 $(DESTDIR)$(MANDIR)/man1/aictl.1 \
	      $(DESTDIR)$(MANDIR)/man8/aicontainers-generator.8 $(DESTDIR)$(MANDIR)/man7/aicontainers-preflight.7
	rm -f $(DESTDIR)$(LIBEXECDIR)/aicontainersd $(DESTDIR)$(SYSTEMUNITDIR)/aicontainersd.service $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-preflight.service \
	      $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-scan.service $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-scan.timer \
	      $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-sandbox.service \
	      $(DESTDIR)$(SYSTEMUNITDIR)/aicontainers-scan@.service $(DESTDIR)$(DBUSIFACEDIR)/org.aicontainers.Image1.xml \
	      $(DESTDIR)$(SYSUSERSDIR)/aicontainers.conf $(DESTDIR)$(PRESETDIR)/50-aicontainers.preset \
	      $(DESTDIR)$(DBUSSYSTEMDIR)/org.aicontainers.Agent1.conf \
	      $(DESTDIR)$(POLKITDIR)/actions/org.aicontainers.policy $(DESTDIR)$(POLKITDIR)/rules.d/50-aicontainers.rules \
	      $(DESTDIR)$(DBUSIFACEDIR)/org.aicontainers.Manager1.xml $(DESTDIR)$(DBUSIFACEDIR)/org.aicontainers.Service1.xml \
	      $(DESTDIR)$(DBUSIFACEDIR)/org.aicontainers.Models1.xml $(DESTDIR)$(DBUSIFACEDIR)/org.aicontainers.Job1.xml \
	      $(DESTDIR)$(MANDIR)/man8/aicontainersd.8 $(DESTDIR)$(BASHCOMPDIR)/aictl \
	      $(DESTDIR)$(ZSHCOMPDIR)/_aictl $(DESTDIR)$(FISHCOMPDIR)/aictl.fish
	rm -rf $(DESTDIR)$(DOCDIR)

# The Debian package, built offline from this tree (debian/README.source): build/deb/*.deb.
# DEB_VERSION=V builds the same tree as version V.
DEBDIR = build/deb
deb:
	rm -rf $(DEBDIR) && mkdir -p $(DEBDIR)
	AICONTAINERS_DEB_DIR=$(abspath $(DEBDIR)) AICONTAINERS_DEB_VERSION=$(DEB_VERSION) \
	  dpkg-buildpackage -b -us -uc --buildinfo-option=-u$(abspath $(DEBDIR)) --changes-option=-u$(abspath $(DEBDIR)) \
	    --buildinfo-file=$(abspath $(DEBDIR))/aicontainers.buildinfo --changes-file=$(abspath $(DEBDIR))/aicontainers.changes

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
