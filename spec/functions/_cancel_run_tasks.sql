begin
  -- placeholder: the engine issue writes the real body
  raise exception 'not implemented yet';
end;
