# Build and install rxtxcpu.
#
#     make                      # build target/release/rxtxcpu and the completions
#     sudo make install         # into /usr/local (PREFIX), under DESTDIR if set
#     sudo make uninstall       # remove exactly the files install put there
#     make lint                 # mandoc -T lint on the man page
#     make deb                  # target/debian/rxtxcpu_VERSION_ARCH.deb
#     make cargo-deb            # install cargo-deb (for make deb) if missing
#
# Installed (PREFIX=/usr/local by default), for each NAME of NAMES below:
#     sbin/rxtxcpu, sbin/NAME -> rxtxcpu
#     share/man/man8/rxtxcpu.8, NAME.8 -> rxtxcpu.8
#     share/bash-completion/completions/NAME
#     share/zsh/site-functions/_NAME
#     share/fish/vendor_completions.d/NAME.fish
#
# The .deb (cargo-deb metadata in Cargo.toml) holds the same files with
# PREFIX=/usr, except that the man pages are gzipped and the zsh completions
# go to share/zsh/vendor-completions, where Debian's zsh looks.
#
# `make install` builds what is missing or older than the sources, so
# `make && sudo make install` runs cargo only as the building user. Cargo's
# output directory is CARGO_TARGET_DIR (default target), as for cargo itself.

PREFIX ?= /usr/local
DESTDIR ?=
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d

CARGO ?= cargo
CARGOFLAGS ?= --locked
CARGO_TARGET_DIR ?= target
INSTALL ?= install

# The program answers to nine names: the name picks the streams (per cpu,
# queue or numa node) and the default direction.
NAMES := rxtxcpu rxcpu txcpu rxtxqueue rxqueue txqueue rxtxnuma rxnuma txnuma
LINKS := $(filter-out rxtxcpu,$(NAMES))

RELEASE := $(CARGO_TARGET_DIR)/release
BIN := $(RELEASE)/rxtxcpu
COMPGEN := $(RELEASE)/examples/completions
# Under release/ so that Cargo.toml's cargo-deb assets can name them
# target/release/completions/...: cargo-deb replaces that prefix with the
# real target directory, whatever CARGO_TARGET_DIR is.
COMPDIR := $(RELEASE)/completions
MANPAGE := man/rxtxcpu.8

SOURCES := Cargo.toml Cargo.lock $(wildcard src/*.rs src/*/*.rs) examples/completions.rs

COMPLETIONS := $(foreach n,$(NAMES),$(COMPDIR)/$(n).bash $(COMPDIR)/_$(n) $(COMPDIR)/$(n).fish)

# Everything install puts under $(DESTDIR), for uninstall.
INSTALLED := \
	$(foreach n,$(NAMES),$(SBINDIR)/$(n)) \
	$(foreach n,$(NAMES),$(MANDIR)/man8/$(n).8) \
	$(foreach n,$(NAMES),$(BASHCOMPDIR)/$(n)) \
	$(foreach n,$(NAMES),$(ZSHCOMPDIR)/_$(n)) \
	$(foreach n,$(NAMES),$(FISHCOMPDIR)/$(n).fish)

.PHONY: all build completions install uninstall lint deb cargo-deb clean
.DELETE_ON_ERROR:

all: build completions

build: $(BIN)

completions: $(COMPLETIONS)

# One cargo run builds the program and the completion generator, which
# share the release build of the library. Cargo decides what to recompile;
# the touch marks both up to date for make even when cargo had nothing to
# do (e.g. only Cargo.toml's mtime changed), so a later `sudo make install`
# does not run cargo as root. (Two rules rather than a grouped `&:` target,
# which needs GNU make 4.3; when both are stale the second cargo run is a
# no-op.)
CARGO_BUILD = $(CARGO) build --release $(CARGOFLAGS) --target-dir '$(CARGO_TARGET_DIR)' \
	--bin rxtxcpu --example completions && touch '$(BIN)' '$(COMPGEN)'

$(BIN): $(SOURCES)
	$(CARGO_BUILD)

$(COMPGEN): $(SOURCES)
	$(CARGO_BUILD)

$(COMPDIR)/%.bash: $(COMPGEN)
	@mkdir -p '$(COMPDIR)'
	'$(COMPGEN)' bash $* > '$@'

$(COMPDIR)/_%: $(COMPGEN)
	@mkdir -p '$(COMPDIR)'
	'$(COMPGEN)' zsh $* > '$@'

$(COMPDIR)/%.fish: $(COMPGEN)
	@mkdir -p '$(COMPDIR)'
	'$(COMPGEN)' fish $* > '$@'

install: $(BIN) $(COMPLETIONS) $(MANPAGE)
	$(INSTALL) -d '$(DESTDIR)$(SBINDIR)' '$(DESTDIR)$(MANDIR)/man8' \
		'$(DESTDIR)$(BASHCOMPDIR)' '$(DESTDIR)$(ZSHCOMPDIR)' '$(DESTDIR)$(FISHCOMPDIR)'
	$(INSTALL) -m 755 '$(BIN)' '$(DESTDIR)$(SBINDIR)/rxtxcpu'
	$(INSTALL) -m 644 '$(MANPAGE)' '$(DESTDIR)$(MANDIR)/man8/rxtxcpu.8'
	for n in $(LINKS); do \
		ln -sfn rxtxcpu '$(DESTDIR)$(SBINDIR)'/$$n && \
		ln -sfn rxtxcpu.8 '$(DESTDIR)$(MANDIR)/man8'/$$n.8 || exit 1; \
	done
	for n in $(NAMES); do \
		$(INSTALL) -m 644 '$(COMPDIR)'/$$n.bash '$(DESTDIR)$(BASHCOMPDIR)'/$$n && \
		$(INSTALL) -m 644 '$(COMPDIR)'/_$$n '$(DESTDIR)$(ZSHCOMPDIR)'/_$$n && \
		$(INSTALL) -m 644 '$(COMPDIR)'/$$n.fish '$(DESTDIR)$(FISHCOMPDIR)'/$$n.fish || exit 1; \
	done

# Only the files install created; the directories may hold other programs'.
uninstall:
	rm -f $(foreach f,$(INSTALLED),'$(DESTDIR)$(f)')

# cargo-deb packages what make built (--no-build): the completions are not
# cargo build products, and make has already run cargo. --strip: the
# release profile keeps debug info (debug = 1), which a package must not
# ship (lintian: unstripped-binary-or-object).
DEBDIR := $(CARGO_TARGET_DIR)/debian

deb: cargo-deb $(BIN) $(COMPLETIONS) $(MANPAGE)
	CARGO_TARGET_DIR='$(CARGO_TARGET_DIR)' $(CARGO) deb --no-build --strip --locked \
		--output '$(DEBDIR)/'

# Installs cargo-deb if it is missing (.ci/run uses this too), pinned. A
# debug build of it compiles in a third of the time of a release build and
# makes the same package as fast (about a second). The symlink assets of
# Cargo.toml's metadata are new in cargo-deb 3.7.
CARGO_DEB_VERSION := 3.8.0
CARGO_DEB_INSTALL ?= $(CARGO) install --locked --debug cargo-deb@$(CARGO_DEB_VERSION)

cargo-deb:
	@found=$$($(CARGO) deb --version 2>/dev/null) || { \
		echo 'cargo-deb is not installed: $(CARGO_DEB_INSTALL)'; \
		$(CARGO_DEB_INSTALL) && found=$$($(CARGO) deb --version); } || exit 1; \
	case "$$found" in \
	'cargo-deb 3.'[7-9].* | 'cargo-deb 3.'[1-9][0-9].*) ;; \
	*) echo "make deb needs cargo-deb 3.7 or later 3.x, not $$found:" \
		'$(CARGO) install --locked --force cargo-deb@$(CARGO_DEB_VERSION)' >&2; exit 1;; \
	esac

lint:
	mandoc -T lint -W warning '$(MANPAGE)'

clean:
	$(CARGO) clean --target-dir '$(CARGO_TARGET_DIR)'
