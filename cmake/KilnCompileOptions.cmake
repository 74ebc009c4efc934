# Warning and sanitizer flags shared by every Kiln target: call kiln_target_defaults(target).
function(kiln_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                           -Wno-missing-field-initializers
                                           # GCC 12 reports false positives in std::string at -O3
                                           -Wno-restrict)
  if(KILN_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(KILN_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined
                                             -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
  # Release builds keep native ISA selection to oneDNN's JIT; our own kernels target x86-64-v3
  # so they vectorise with AVX2/FMA while still running on any recent x86-64 machine.
  target_compile_options(${target} PRIVATE $<$<NOT:$<CONFIG:Debug>>:-march=x86-64-v3>)
endfunction()
