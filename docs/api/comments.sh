#!/bin/sh
# Doxygen's input filter for mp's headers (docs/api/Doxyfile): turns the house style's
# plain // comment lines into /// documentation lines, and the header's first comment
# block into its \file comment. Code and comments after code on a line are unchanged.
exec awk '
  BEGIN { in_file_comment = 1 }
  in_file_comment && /^\/\// { sub(/^\/\/ ?/, ""); print (NR == 1 ? "/// \\file\n/// " : "/// ") $0; next }
  { in_file_comment = 0 }
  /^[ \t]*\/\/[^\/]/ || /^[ \t]*\/\/$/ { sub(/\/\//, "///"); print; next }
  { print }
' "$1"
