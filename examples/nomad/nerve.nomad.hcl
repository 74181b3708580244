# Nerve under Nomad (docs/schedulers.md). Two jobs in one file: `nomad job run` takes one job
# per file, so split them to run (`nerve-center` first); .ci/check-examples.sh parses both.
#
# 1. nerve-center: a system job, one center per client node, on an ipc socket in /run/nerve
#    that the tasks of that node reach. Nomad owns its restarts.
job "nerve-center" {
  type = "system"

  group "center" {
    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    # The socket and log directories must exist before the center binds.
    task "dirs" {
      lifecycle {
        hook = "prestart"
      }
      driver = "raw_exec"
      config {
        command = "/bin/mkdir"
        args    = ["-p", "/run/nerve", "/var/lib/nerve/logs"]
      }
    }

    task "center" {
      driver = "raw_exec"

      # TERM stops the center cleanly (it removes its socket files); its watchers keep their
      # children running and reconnect when it is back.
      kill_signal  = "SIGTERM"
      kill_timeout = "10s"

      config {
        command = "/usr/local/bin/nrv-center"
        args = [
          "-n", "${node.unique.name}",
          "-e", "ipc:///run/nerve/nerve.sock",
          "-c", "ipc:///run/nerve/nerve-control.sock",
          "-l", "/var/lib/nerve/nerve.log",
          "--logdir", "/var/lib/nerve/logs",
        ]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}

# 2. An application job: nrv-open is the task's command and runs the real program as its
#    child. Nomad owns restarts (the restart block below; nrv-open's --autorestart never), and
#    nrv-open exits with the child's status, so Nomad sees the program's own exit code.
job "worker" {
  type = "service"

  group "worker" {
    count = 2

    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    task "worker" {
      driver = "raw_exec"

      # TERM runs nrv-open's stop sequence: the child's stop signal, KILL after
      # --stopwaitsecs (10), then up to --linger (5) for the center to acknowledge every
      # event. kill_timeout covers both.
      kill_signal  = "SIGTERM"
      kill_timeout = "20s"

      config {
        command = "/usr/local/bin/nrv-open"
        args = [
          "-e", "ipc:///run/nerve/nerve.sock",
          "--name", "${NOMAD_JOB_NAME}.${NOMAD_TASK_NAME}.${NOMAD_SHORT_ALLOC_ID}",
          "--autorestart", "never",
          "--stopsignal", "TERM",
          "--stopwaitsecs", "10",
          "--linger", "5",
          "--",
          "/bin/sh", "-c", "while true; do echo \"alloc $NOMAD_ALLOC_ID working\"; sleep 5; done",
        ]
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
