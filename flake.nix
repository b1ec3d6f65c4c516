{
  description = "hydra-sentinel: watches Hydra for failing nixpkgs jobs, tells maintainers, marks long-failing packages broken";

  # No flake.lock is committed: the first `nix build` (or `nix flake lock`)
  # pins nixpkgs and writes it.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      # The units are Linux-only (systemd), and so is the package's meta.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # A host using the module as README.md shows it, in either mode.
      exampleHost =
        system: mode:
        lib.nixosSystem {
          modules = [
            self.nixosModules.default
            {
              nixpkgs.hostPlatform = system;
              # Evaluated for its units only: no boot loader or file systems.
              boot.isContainer = true;
              system.stateVersion = "25.11";
              services.hydra-sentinel = {
                enable = true;
                inherit mode;
                settings = {
                  hydra.contact = "@sentinel-operator:matrix.org";
                  jobsets = [
                    {
                      project = "nixpkgs";
                      jobset = "trunk";
                    }
                  ];
                  nixpkgs.checkout = "/var/lib/hydra-sentinel/nixpkgs";
                  github = {
                    repo = "NixOS/nixpkgs";
                    fork = "sentinel-bot/nixpkgs";
                    push_url = "https://github.com/sentinel-bot/nixpkgs.git";
                  };
                  act.enabled = false;
                };
                policyFile = ./policies/nixpkgs.toml;
                githubTokenFile = "/run/secrets/hydra-sentinel-github-token";
              };
            }
          ];
        };

      # Builds only if the module's units carry every directive of the unit
      # files in systemd/ (the reference for hardening), its assertions hold
      # and its rendered configuration passed `hydra-sentinel config check`
      # (a dependency of this check).
      moduleCheck =
        pkgs: mode:
        let
          host = exampleHost pkgs.stdenv.hostPlatform.system mode;
          inherit (host.config) systemd environment;
          failed = map (a: a.message) (lib.filter (a: !a.assertion) host.config.assertions);
          names =
            if mode == "service" then
              [ "hydra-sentinel.service" ]
            else
              [
                "hydra-sentinel-once.service"
                "hydra-sentinel-once.timer"
              ];
          unit = name: "${systemd.units.${name}.unit}/${name}";
          compare = name: "compare ${./systemd + "/${name}"} ${unit name}";
          credentials = "/run/credentials/${lib.removeSuffix ".service" (builtins.head names)}.service";
        in
        assert lib.assertMsg (failed == [ ]) (lib.concatStringsSep "\n" failed);
        pkgs.runCommand "hydra-sentinel-module-${mode}" { } ''
          # The [Service] and [Timer] lines of a unit in systemd/, less what
          # is a path on a Debian host, with yes written as NixOS writes it.
          reference() {
            sed -n '/^\[\(Service\|Timer\)\]/,/^\[Install\]/p' "$1" \
              | grep -v '^#\|^\[\|^$\|^ExecStart=\|^ExecReload=\|^LoadCredential=' \
              | sed 's/=yes$/=true/'
          }
          compare() {
            local missing
            missing=$(reference "$1" | while IFS= read -r line; do
              # NixOS quotes Environment= values.
              tr -d '"' < "$2" | grep -qxF -- "$line" || echo "$line"
            done)
            if [ -n "$missing" ]; then
              printf '%s lacks these lines of %s:\n%s\n' "$2" "$1" "$missing" >&2
              exit 1
            fi
          }
          ${lib.concatMapStringsSep "\n" compare names}

          service=${unit (builtins.head names)}
          grep -qx 'LoadCredential=github-token:/run/secrets/hydra-sentinel-github-token' "$service"
          grep -q '^ExecStart=.*/bin/hydra-sentinel --config /etc/hydra-sentinel/hydra-sentinel.toml ${
            if mode == "service" then "run" else "once"
          }$' "$service"

          config=${environment.etc."hydra-sentinel/hydra-sentinel.toml".source}
          grep -qxF 'token_file = "${credentials}/github-token"' "$config"
          grep -qx 'file = "/nix/store/[^"]*/policies/nixpkgs\.toml"' "$config"
          touch $out
        '';
    in
    {
      packages = forAllSystems (pkgs: rec {
        hydra-sentinel = pkgs.callPackage ./nix/package.nix { };
        default = hydra-sentinel;
      });

      overlays.default = final: prev: {
        hydra-sentinel = final.callPackage ./nix/package.nix { };
      };

      nixosModules.default = ./nix/module.nix;

      checks = forAllSystems (pkgs: {
        # The build runs the test suite (see checkFlags for what is skipped).
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        module-service = moduleCheck pkgs "service";
        module-timer = moduleCheck pkgs "timer";
      });
    };
}
