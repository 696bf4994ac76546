# tandem A/B boot selection for U-Boot (rules: docs/boot-flows.md, "uboot").
# Compile with: mkimage -A arm64 -T script -C none -d boot.cmd boot.scr
#
# The script does not use U-Boot's own environment storage (saveenv), which
# differs from board to board (raw flash, eMMC, a FAT file, none). tandem's
# state is a pair of files on a FAT partition in U-Boot's redundant
# environment layout: CRC32 (little-endian) of the data area, a flag byte,
# then "name=value" entries ending with an empty one. tandem writes them from
# Linux; this script reads them with load, checks the CRC with crc32, takes
# the copy U-Boot's rule makes current (of the good copies the newer flag;
# 0 beats 255; equal flags pick the first file) and imports only
#   tandem_default      the default group
#   tandem_trial        the group to try
#   tandem_trial_left   attempts left; counted down and written BEFORE the trial boots
# To count a trial attempt down it writes a whole new copy, with the next
# flag, over the copy that is NOT current: fatwrite of a file that exists with
# the same size rewrites its clusters in place, so a power cut can only tear
# that copy, and the current one still holds the old count.
#
# With tandem_env_mode=saveenv the script instead uses U-Boot's own
# environment: the three variables are whatever U-Boot loaded, and saveenv
# counts down. Use that only with a redundant environment
# (CONFIG_SYS_REDUNDAND_ENVIRONMENT), paired with tandem's fw-setenv back end.
#
# Settings (setenv them before this script; only tandem_boot is required):
#   tandem_boot             run with tandem_group set: load that group's kernel and boot it,
#                           passing tandem.group=${tandem_group} on the kernel command line
#   tandem_groups           the configured groups, the first is the last-resort default ("a b")
#   tandem_env_mode         "files" (default) or "saveenv"
#   tandem_env_dev          interface and dev:part of the FAT partition holding the files
#                           (default: where distro boot found this script, "${devtype} ${devnum}:${distro_bootpart}")
#   tandem_env_file         first copy, path on that partition ("uboot.env": env-file)
#   tandem_env_file_redund  second copy ("uboot-redund.env": env-file-redund)
#   tandem_env_size         size of each copy (0x4000: env-size)
#   tandem_env_addr         free RAM for 5 copies plus the board's environment size
#                           (default ${kernel_addr_r}: the kernel is loaded after this script)
# Commands used: load, crc32, cp, mw, itest, setexpr, env import/export, fatwrite.

if test -z "${tandem_groups}"; then setenv tandem_groups "a b"; fi
if test "${tandem_env_mode}" != saveenv; then
  if test -z "${tandem_env_dev}"; then setenv tandem_env_dev "${devtype} ${devnum}:${distro_bootpart}"; fi
  if test -z "${tandem_env_file}"; then setenv tandem_env_file uboot.env; fi
  if test -z "${tandem_env_file_redund}"; then setenv tandem_env_file_redund uboot-redund.env; fi
  if test -z "${tandem_env_size}"; then setenv tandem_env_size 0x4000; fi
  if test -z "${tandem_env_addr}"; then setenv tandem_env_addr ${kernel_addr_r}; fi

  # Scratch RAM: copy 0, copy 1 (each loaded with at most one byte more than
  # the size, to see a file that is too long), a CRC word (big-endian as crc32
  # stores it, then byte-reversed), the copy to write. setexpr works in hex.
  setexpr tandem_len ${tandem_env_size} - 5
  setexpr tandem_max ${tandem_env_size} + 1
  setexpr tandem_gap ${tandem_env_size} * 2
  setexpr tandem_a0 ${tandem_env_addr} + 0
  setexpr tandem_a1 ${tandem_a0} + ${tandem_gap}
  setexpr tandem_c0 ${tandem_a1} + ${tandem_gap}
  setexpr tandem_c1 ${tandem_c0} + 1
  setexpr tandem_c2 ${tandem_c0} + 2
  setexpr tandem_c3 ${tandem_c0} + 3
  setexpr tandem_r0 ${tandem_c0} + 4
  setexpr tandem_r1 ${tandem_c0} + 5
  setexpr tandem_r2 ${tandem_c0} + 6
  setexpr tandem_r3 ${tandem_c0} + 7
  setexpr tandem_out ${tandem_c0} + 0x100

  # tandem_check: load ${tandem_file} to ${tandem_a}; tandem_size=1 if it has
  # the right size, tandem_ok=1 if its CRC is also good, tandem_flag its flag.
  setenv tandem_check 'setenv tandem_size 0; setenv tandem_ok 0; setenv tandem_flag 0; if load ${tandem_env_dev} ${tandem_a} ${tandem_file} ${tandem_max} && itest ${filesize} == ${tandem_env_size}; then setenv tandem_size 1; setexpr tandem_d ${tandem_a} + 5; setexpr tandem_fa ${tandem_a} + 4; setexpr.b tandem_flag *${tandem_fa}; crc32 ${tandem_d} ${tandem_len} ${tandem_c0}; cp.b ${tandem_c3} ${tandem_r0} 1; cp.b ${tandem_c2} ${tandem_r1} 1; cp.b ${tandem_c1} ${tandem_r2} 1; cp.b ${tandem_c0} ${tandem_r3} 1; if itest.l *${tandem_a} == *${tandem_r0}; then setenv tandem_ok 1; else echo "tandem: ${tandem_file}: bad CRC"; fi; fi'
  setenv tandem_a ${tandem_a0}; setenv tandem_file ${tandem_env_file}; run tandem_check
  setenv tandem_size0 ${tandem_size}; setenv tandem_ok0 ${tandem_ok}; setenv tandem_flag0 ${tandem_flag}
  setenv tandem_a ${tandem_a1}; setenv tandem_file ${tandem_env_file_redund}; run tandem_check
  setenv tandem_size1 ${tandem_size}; setenv tandem_ok1 ${tandem_ok}; setenv tandem_flag1 ${tandem_flag}

  # The current copy.
  setenv tandem_cur
  if test ${tandem_ok0} = 1 && test ${tandem_ok1} = 1; then
    setenv tandem_cur 0
    if itest ${tandem_flag0} == 0xff && itest ${tandem_flag1} == 0; then
      setenv tandem_cur 1
    elif itest ${tandem_flag1} -gt ${tandem_flag0}; then
      if itest ${tandem_flag1} != 0xff || itest ${tandem_flag0} != 0; then setenv tandem_cur 1; fi
    fi
  elif test ${tandem_ok0} = 1; then
    setenv tandem_cur 0
  elif test ${tandem_ok1} = 1; then
    setenv tandem_cur 1
  fi

  # Only tandem's variables come from the file (a variable the file does not
  # hold stays unset; env import warns about it).
  setenv tandem_default
  setenv tandem_trial
  setenv tandem_trial_left
  if test "${tandem_cur}" = 0; then
    setexpr tandem_d ${tandem_a0} + 5
    setenv tandem_flag ${tandem_flag0}; setenv tandem_file ${tandem_env_file_redund}; setenv tandem_size ${tandem_size1}
  elif test "${tandem_cur}" = 1; then
    setexpr tandem_d ${tandem_a1} + 5
    setenv tandem_flag ${tandem_flag1}; setenv tandem_file ${tandem_env_file}; setenv tandem_size ${tandem_size0}
  else
    echo "tandem: no valid copy of ${tandem_env_file} or ${tandem_env_file_redund}"
  fi
  if test -n "${tandem_cur}"; then
    env import -b ${tandem_d} ${tandem_len} tandem_default tandem_trial tandem_trial_left
  fi
fi

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

# 2. A trial: a known group with 1..9 attempts left. The count goes down
# before the trial boots: in files mode in a new copy written over the copy
# that is not current (which must exist with the right size, so that fatwrite
# rewrites it in place); in saveenv mode by saveenv.
setenv tandem_try
for g in ${tandem_groups}; do
  if test "${tandem_trial}" = "${g}"; then setenv tandem_try "${g}"; fi
done
if test -n "${tandem_try}"; then
  if test "${tandem_trial_left}" -ge 1 && test "${tandem_trial_left}" -le 9; then
    # setexpr prints hex; for 0..9 that is the same digit
    setexpr tandem_trial_left ${tandem_trial_left} - 1
    setenv tandem_saved 0
    if test "${tandem_env_mode}" = saveenv; then
      if saveenv; then setenv tandem_saved 1; fi
    elif test "${tandem_size}" = 1; then
      setexpr tandem_d ${tandem_out} + 5
      setexpr tandem_fa ${tandem_out} + 4
      setexpr tandem_r ${tandem_out} + 1
      env export -b -s ${tandem_len} ${tandem_d} tandem_default tandem_trial tandem_trial_left
      crc32 ${tandem_d} ${tandem_len} ${tandem_c0}
      cp.b ${tandem_c3} ${tandem_out} 1
      cp.b ${tandem_c2} ${tandem_r} 1
      setexpr tandem_r ${tandem_out} + 2
      cp.b ${tandem_c1} ${tandem_r} 1
      setexpr tandem_r ${tandem_out} + 3
      cp.b ${tandem_c0} ${tandem_r} 1
      setexpr tandem_flag ${tandem_flag} + 1
      mw.b ${tandem_fa} ${tandem_flag}
      if fatwrite ${tandem_env_dev} ${tandem_out} ${tandem_file} ${tandem_env_size}; then setenv tandem_saved 1; fi
    else
      echo "tandem: ${tandem_file} is missing or has the wrong size"
    fi
    if test ${tandem_saved} = 1; then
      echo "tandem: trying group ${tandem_try} (${tandem_trial_left} attempts left after this one)"
      setenv tandem_group "${tandem_try}"
    else
      echo "tandem: cannot count the trial attempt down, booting the default"
    fi
  fi
fi
setenv tandem_try
echo "tandem: booting group ${tandem_group}"

run tandem_boot
