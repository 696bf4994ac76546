# tandem A/B boot selection for U-Boot (rule table: docs/boot-flows.md, "uboot").
# Compile with: mkimage -A arm64 -T script -C none -d boot.cmd boot.scr
#
# tandem keeps three variables in the U-Boot environment (configure U-Boot
# with a redundant environment, e.g. two env files on the boot partition or
# two copies in flash, so that saveenv never tears the only copy):
#   tandem_default      the default group
#   tandem_trial        the group to try
#   tandem_trial_left   attempts left; counted down and saved BEFORE the trial boots
#
# Set tandem_groups (first = last-resort default) and tandem_boot before use;
# tandem_boot is run with tandem_group set, e.g.
#   setenv tandem_boot 'load virtio 0:${tandem_part} ${kernel_addr_r} /vmlinuz; ...; booti ...'
# and must pass tandem.group=${tandem_group} on the kernel command line.

if test -z "${tandem_groups}"; then setenv tandem_groups "a b"; fi

# 1. The default: tandem_default if it names a group, else the first group.
setenv tandem_group
for g in ${tandem_groups}; do
  if test "${tandem_default}" = "${g}"; then setenv tandem_group "${g}"; fi
done
if test -z "${tandem_group}"; then
  for g in ${tandem_groups}; do
    if test -z "${tandem_group}"; then setenv tandem_group "${g}"; fi
  done
  echo "tandem: no usable default, falling back to ${tandem_group}"
fi

# 2. A trial: a known group with 1..9 attempts left.
setenv tandem_try
for g in ${tandem_groups}; do
  if test "${tandem_trial}" = "${g}"; then setenv tandem_try "${g}"; fi
done
if test -n "${tandem_try}"; then
  if test "${tandem_trial_left}" -ge 1 && test "${tandem_trial_left}" -le 9; then
    # setexpr prints hex; for 0..9 that is the same digit
    setexpr tandem_trial_left ${tandem_trial_left} - 1
    if saveenv; then
      echo "tandem: trying group ${tandem_try} (${tandem_trial_left} attempts left after this one)"
      setenv tandem_group "${tandem_try}"
    else
      echo "tandem: cannot count the trial attempt down, booting the default"
    fi
  fi
fi
setenv tandem_try

run tandem_boot
